"""The deployment examples under deploy/ are read as a deployer would run them (no Docker engine or cluster here, so
they are parsed, not started): every VOXARENA_* variable they set is a setting, every node has the settings a
cluster needs with the same values, the grace periods outlast the drain, probes hit /health, the LiveKit nodes
share one Redis, no secret is written down, and a node's environment is accepted by Settings."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import PREFIX, Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SETTINGS = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)} | {
    PREFIX + f.metadata["alias"] for f in dataclasses.fields(Settings) if "alias" in f.metadata
}
# What every node of a cluster needs, with one value for all of them.
CLUSTER = {
    "VOXARENA_DATABASE_URL",
    "VOXARENA_REDIS_URL",
    "VOXARENA_LIVEKIT_API_KEY",
    "VOXARENA_LIVEKIT_API_SECRET",
    "VOXARENA_SECRET_KEY",
}
SECRET_NAMES = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY$|KEYS$")
INTERPOLATION = re.compile(r"^\$\{[A-Z_]+(:?[-?][^}]*)?\}$")


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _kube() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()) if d]


def _compose_nodes() -> dict[str, dict[str, str]]:
    services = _compose()["services"]
    return {
        name: {k: str(v) for k, v in s["environment"].items()} for name, s in services.items() if "voxarena" in name
    }


def _kube_env() -> dict[str, str]:
    docs = {d["kind"]: d for d in _kube()}
    return {**docs["ConfigMap"]["data"], **docs["Secret"]["stringData"]}


def _substituted(value: str) -> str:
    """A compose interpolation replaced by a made-up value of the kind the variable wants."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        return {"POSTGRES_PASSWORD": "pw", "VOXARENA_PUBLIC_URL": "http://localhost:8080"}.get(name, "x" * 40)

    return re.sub(r"\$\{([A-Z_]+)(?::?[-?][^}]*)?\}", one, value)


def test_every_variable_set_is_a_setting():
    names = {k for env in _compose_nodes().values() for k in env} | set(_kube_env())
    names |= {"VOXARENA_NODE_ID"}  # set per pod from its name in the Deployment
    voxarena = {n for n in names if n.startswith(PREFIX)}
    assert voxarena and voxarena <= SETTINGS, voxarena - SETTINGS


def test_every_compose_node_has_the_cluster_settings_with_one_value():
    nodes = _compose_nodes()
    assert len(nodes) >= 2
    for name, env in nodes.items():
        assert set(env) >= CLUSTER, (name, CLUSTER - set(env))
    for setting in CLUSTER:
        assert len({env[setting] for env in nodes.values()}) == 1, setting
    assert len({env["VOXARENA_NODE_ID"] for env in nodes.values()}) == len(nodes)  # a name each
    urls = {env["VOXARENA_LIVEKIT_URL"] for env in nodes.values()}
    assert len(urls) == 2  # the nodes are spread over both LiveKit nodes


def test_a_compose_nodes_environment_is_accepted_by_settings():
    for env in _compose_nodes().values():
        settings = Settings.from_env({k: _substituted(v) for k, v in env.items()})
        assert settings.database_url.startswith("postgresql://") and settings.redis_url.startswith("redis://")


def test_the_kubernetes_environment_is_accepted_by_settings_and_has_the_cluster_settings():
    env = _kube_env()
    assert set(CLUSTER) <= set(env), CLUSTER - set(env)
    Settings.from_env({k: v.replace("CHANGE-ME", "x" * 40) for k, v in env.items()})


def test_grace_periods_outlast_the_drain():
    services = _compose()["services"]
    for name, env in _compose_nodes().items():
        drain = float(env.get("VOXARENA_DRAIN_TIMEOUT_SECONDS", Settings().drain_timeout_seconds))
        grace = services[name]["stop_grace_period"]
        assert grace.endswith("s") and float(grace[:-1]) > drain, (name, grace, drain)
    spec = next(d for d in _kube() if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    drain = float(_kube_env().get("VOXARENA_DRAIN_TIMEOUT_SECONDS", Settings().drain_timeout_seconds))
    (container,) = spec["containers"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    pause = float(pre_stop[-1]) if pre_stop[0] == "sleep" else 0.0
    assert spec["terminationGracePeriodSeconds"] > drain + pause, (spec["terminationGracePeriodSeconds"], drain)


def test_probes_ask_health_on_the_api_port():
    (container,) = next(d for d in _kube() if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/health" and port[get["port"]] == int(_kube_env()["VOXARENA_PORT"])
    for name, service in _compose()["services"].items():
        if "voxarena" in name:
            assert "/health" in " ".join(service["healthcheck"]["test"])


def test_the_livekit_nodes_share_one_redis_and_post_webhooks_to_every_node():
    config = yaml.safe_load((DEPLOY / "livekit.yaml").read_text())
    services = _compose()["services"]
    livekit = [n for n, s in services.items() if str(s.get("image", "")).startswith("livekit/livekit-server")]
    assert len(livekit) == 2
    for name in livekit:
        assert "./livekit.yaml:/etc/livekit.yaml:ro" in services[name]["volumes"]
    assert config["redis"]["address"] == "redis:6379"
    hooks = set(config["webhook"]["urls"])
    assert hooks == {f"http://{n}:8080/api/livekit/webhook" for n in _compose_nodes()}
    sip = yaml.safe_load(services["livekit-sip"]["environment"]["SIP_CONFIG_BODY"].replace("${", "x").replace("}", ""))
    assert sip["redis"]["address"] == config["redis"]["address"]


def _secrets(node: Any, path: str = "") -> list[tuple[str, str]]:
    """(where, value) of every value under a secret-looking name, in any nesting."""
    out: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, str) and SECRET_NAMES.search(str(k)) and not str(k).endswith("API_KEY"):
                out.append((f"{path}.{k}", v))
            out += _secrets(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _secrets(v, f"{path}[{i}]")
    return out


@pytest.mark.parametrize("name", ["docker-compose.yml", "kubernetes.yaml", "livekit.yaml"])
def test_no_secret_is_written_down(name):
    docs = list(yaml.safe_load_all((DEPLOY / name).read_text()))
    found = [pair for doc in docs for pair in _secrets(doc)]
    for where, value in found:
        interpolated = INTERPOLATION.match(value) or "${" in value
        assert interpolated or "CHANGE-ME" in value, (name, where, value)
    if name == "docker-compose.yml":
        assert found  # the check saw the secrets it is about
