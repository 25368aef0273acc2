"""The deployment examples in deploy/ (docker-compose.yml with its LiveKit and SIP configs, kubernetes.yaml) agree
with the product: every ``VOXARENA_*`` they name is a setting, every node gets the settings a multi-node deployment
needs with the same values, the grace periods outlast the drain, the probes ask ``/health`` on the API port, the
LiveKit nodes and the SIP bridge share one Redis, no secret is written in them, and a node's environment passes the
settings' validation. No Docker engine or cluster here: the files are parsed, not run. Each check is a function
returning problems, and the last tests break a copy of the examples to see each one fire."""

from __future__ import annotations

import copy
import re
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from core.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SETTING_NAMES = {PREFIX + f.name.upper() for f in fields(Settings)}
# Settings never shown in logs or reprs are the secrets (keys, passwords, URLs that may carry a password).
SECRET_SETTINGS = {PREFIX + f.name.upper() for f in fields(Settings) if not f.repr}
# What every node of a multi-node deployment needs, with the same value on each.
MULTI_NODE = tuple(
    PREFIX + name
    for name in ("DATABASE_URL", "REDIS_URL", "LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "SECRET_KEY")
)
# Other programs' secrets in the examples' environments (LiveKit's LIVEKIT_KEYS, PostgreSQL's password).
OTHER_SECRET = re.compile(r"SECRET|PASSWORD|KEYS$")
# `${VAR}`, `${VAR:?message}`, `${VAR:-default}` (compose interpolation); a message holds no `}`.
INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[?-])([^}]*))?\}")
DRAIN = PREFIX + "DRAIN_TIMEOUT_SECONDS"
MARGIN_SECONDS = 10


def _load() -> dict[str, Any]:
    return {
        "compose": yaml.safe_load((DEPLOY / "docker-compose.yml").read_text()),
        "livekit": yaml.safe_load((DEPLOY / "livekit.yaml").read_text()),
        "sip": yaml.safe_load((DEPLOY / "sip.yaml").read_text()),
        "k8s": list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text())),
        "env_example": (DEPLOY / ".env.example").read_text(),
    }


@pytest.fixture
def examples() -> dict[str, Any]:
    return _load()


# --- reading the examples ---


def compose_nodes(compose: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The voxarena services (built from the repository's Dockerfile) and their environments."""
    nodes = {}
    for name, service in compose["services"].items():
        build = service.get("build")
        if isinstance(build, dict) and build.get("dockerfile") == "Dockerfile":
            env = service.get("environment") or {}
            if isinstance(env, list):  # the `- KEY=value` form
                env = dict(item.split("=", 1) for item in env)
            nodes[name] = {k: str(v) for k, v in env.items()}
    return nodes


def livekit_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        n: s for n, s in compose["services"].items() if str(s.get("image", "")).startswith("livekit/livekit-server")
    }


def sip_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if str(s.get("image", "")).startswith("livekit/sip")}


def deployment(k8s: list[dict[str, Any]]) -> dict[str, Any]:
    found = [d for d in k8s if d and d.get("kind") == "Deployment"]
    assert len(found) == 1, f"kubernetes.yaml should hold one Deployment, not {len(found)}"
    return found[0]


def k8s_container(k8s: list[dict[str, Any]]) -> dict[str, Any]:
    return deployment(k8s)["spec"]["template"]["spec"]["containers"][0]


def k8s_env(k8s: list[dict[str, Any]]) -> dict[str, Any]:
    """The container's environment: a ConfigMap's entries (envFrom) overridden by its own `env` list; a value is a
    string, or the `valueFrom` mapping (secretKeyRef, ...)."""
    maps = {d["metadata"]["name"]: d.get("data") or {} for d in k8s if d and d.get("kind") == "ConfigMap"}
    env: dict[str, Any] = {}
    container = k8s_container(k8s)
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update({k: str(v) for k, v in maps[source["configMapRef"]["name"]].items()})
    for item in container.get("env", []):
        env[item["name"]] = item["valueFrom"] if "valueFrom" in item else str(item.get("value", ""))
    return env


def duration_seconds(value: Any) -> float:
    """A compose duration (`330s`, `5m30s`, `1h`) in seconds."""
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", str(value))
    if m is None or not any(m.groups()):
        raise ValueError(f"not a compose duration: {value!r}")
    hours, minutes, seconds = (float(g or 0) for g in m.groups())
    return hours * 3600 + minutes * 60 + seconds


def drain_seconds(env: dict[str, Any]) -> float:
    """The drain timeout a node runs with: its own setting, else the default of `Settings`."""
    raw = env.get(DRAIN)
    return float(raw) if isinstance(raw, str) and raw else Settings().drain_timeout_seconds


def prestop_seconds(container: dict[str, Any]) -> float:
    """How long the preStop hook waits (`sleep: {seconds}` or `exec: sleep N`); 0 without one."""
    hook = container.get("lifecycle", {}).get("preStop")
    if not hook:
        return 0.0
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = hook.get("exec", {}).get("command", [])
    m = re.search(r"\bsleep\s+(\d+(?:\.\d+)?)", " ".join(command))
    return float(m.group(1)) if m else 0.0


def substitute(value: str, dummies: dict[str, str]) -> str:
    """Compose's interpolation with a dummy value for each variable; `${VAR:-default}` takes its default."""

    def one(m: re.Match[str]) -> str:
        var, op, arg = m.groups()
        return arg if op in {"-", ":-"} else dummies.setdefault(var, f"dummy-{var.lower().replace('_', '-')}")

    return INTERPOLATION.sub(one, value)


def literal_secret(value: str) -> bool:
    """Whether a secret is written in the value itself rather than taken from `${VAR:?...}`: a URL whose password
    is not such an interpolation (a URL without a password holds none), a `name: secret` pair (LIVEKIT_KEYS) whose
    secret is not one, or any other value with a letter or digit outside them."""
    marked = re.sub(r"\$\{\w+:\?[^}]*\}", "\x00", value)
    pair = re.fullmatch(r"[\w.-]+: (.*)", marked)
    if pair:
        marked = pair.group(1)
    if "://" in value:
        return urlsplit(marked).password not in (None, "\x00")
    return re.search(r"[A-Za-z0-9]", marked) is not None


def _redis_address(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}"


# --- the checks: each returns its problems ---


def unknown_settings(texts: dict[str, str]) -> list[str]:
    """Each `VOXARENA_*` name in the texts that is not a field of `Settings`."""
    named = {(file, v) for file, text in texts.items() for v in re.findall(r"\bVOXARENA_[A-Z0-9_]+", text)}
    return sorted(f"{file}: {v}" for file, v in named if v not in SETTING_NAMES)


def multi_node_problems(ex: dict[str, Any]) -> list[str]:
    problems = []
    nodes = compose_nodes(ex["compose"])
    if len(nodes) < 2:
        problems.append(f"compose: {len(nodes)} voxarena node(s), a multi-node example needs several")
    for setting in MULTI_NODE:
        values = {name: env.get(setting) for name, env in nodes.items()}
        missing = sorted(n for n, v in values.items() if not v)
        if missing:
            problems.append(f"compose: {setting} missing on {missing}")
        elif len(set(values.values())) > 1:
            problems.append(f"compose: {setting} differs between nodes: {values}")
    ids = [env.get(PREFIX + "NODE_ID") for env in nodes.values()]
    if any(ids) and len(set(ids)) != len(ids):
        problems.append(f"compose: the nodes' {PREFIX}NODE_ID are not one each: {ids}")
    spec = deployment(ex["k8s"])["spec"]
    if spec.get("replicas", 1) < 2:
        problems.append(f"kubernetes: replicas {spec.get('replicas', 1)}, a multi-node example needs several")
    env = k8s_env(ex["k8s"])
    for setting in MULTI_NODE:
        value = env.get(setting)
        if not value:
            problems.append(f"kubernetes: {setting} missing")
        elif isinstance(value, dict) and "secretKeyRef" not in value:
            # fieldRef and resourceFieldRef give each pod its own value
            problems.append(f"kubernetes: {setting} comes from {sorted(value)}, not the same value for every pod")
    node_id = env.get(PREFIX + "NODE_ID")
    if node_id is not None and node_id != {"fieldRef": {"fieldPath": "metadata.name"}}:
        problems.append(f"kubernetes: {PREFIX}NODE_ID is {node_id!r}, not each pod's own name")
    return problems


def webhook_problems(ex: dict[str, Any]) -> list[str]:
    """Every LiveKit node posts its webhooks to every voxarena node, signed with the key the nodes verify."""
    problems = []
    hook = ex["livekit"].get("webhook") or {}
    nodes = compose_nodes(ex["compose"])
    expected = {f"http://{name}:{Settings().port}/api/livekit/webhook" for name in nodes}
    if set(hook.get("urls") or []) != expected:
        problems.append(f"livekit.yaml: webhooks go to {sorted(hook.get('urls') or [])}, not {sorted(expected)}")
    keys = {env.get(PREFIX + "LIVEKIT_API_KEY") for env in nodes.values()}
    if keys != {hook.get("api_key")}:
        problems.append(f"livekit.yaml: webhooks signed with {hook.get('api_key')!r}, the nodes verify {sorted(keys)}")
    for name, service in livekit_services(ex["compose"]).items():
        configured = str((service.get("environment") or {}).get("LIVEKIT_KEYS", "")).split(":")[0]
        if configured != hook.get("api_key"):
            problems.append(f"compose: {name}'s LIVEKIT_KEYS names {configured!r}, not {hook.get('api_key')!r}")
    return problems


def grace_problems(ex: dict[str, Any]) -> list[str]:
    problems = []
    for name, service in ex["compose"]["services"].items():
        if name not in compose_nodes(ex["compose"]):
            continue
        drain = drain_seconds(service.get("environment") or {})
        grace = duration_seconds(service.get("stop_grace_period", "10s"))  # compose's default: 10 s
        if grace < drain + MARGIN_SECONDS:
            problems.append(f"compose: {name} stop_grace_period {grace:g}s is not past the {drain:g}s drain + margin")
    pod = deployment(ex["k8s"])["spec"]["template"]["spec"]
    grace = float(pod.get("terminationGracePeriodSeconds", 30))  # Kubernetes' default: 30 s
    drain = drain_seconds(k8s_env(ex["k8s"]))
    prestop = prestop_seconds(k8s_container(ex["k8s"]))
    if prestop <= 0:
        problems.append("kubernetes: no preStop hook giving the load balancer time to stop sending")
    if grace < prestop + drain + MARGIN_SECONDS:
        problems.append(
            f"kubernetes: terminationGracePeriodSeconds {grace:g} is not past the {prestop:g}s preStop "
            f"+ {drain:g}s drain + margin"
        )
    return problems


def probe_problems(ex: dict[str, Any]) -> list[str]:
    problems = []
    container = k8s_container(ex["k8s"])
    env = k8s_env(ex["k8s"])
    api_port = int(env.get(PREFIX + "PORT") or Settings().port)
    named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    for kind in ("readinessProbe", "livenessProbe"):
        get = (container.get(kind) or {}).get("httpGet")
        if not get:
            problems.append(f"kubernetes: no {kind} with httpGet")
            continue
        port = named.get(get["port"], get["port"])
        if get.get("path") != "/health" or port != api_port:
            problems.append(f"kubernetes: {kind} asks {get.get('path')} on port {port}, not /health on {api_port}")
    for name in compose_nodes(ex["compose"]):
        test = " ".join(map(str, ex["compose"]["services"][name].get("healthcheck", {}).get("test", [])))
        if f":{api_port}/health" not in test:
            problems.append(f"compose: {name}'s healthcheck does not ask /health on port {api_port}")
        if ex["compose"]["services"][name].get("healthcheck", {}).get("disable"):
            problems.append(f"compose: {name}'s healthcheck is disabled")
    for name, service in ex["compose"]["services"].items():
        for dep, cond in (service.get("depends_on") or {}).items():
            has_check = "healthcheck" in ex["compose"]["services"][dep]
            if cond.get("condition") == "service_healthy" and not has_check:
                problems.append(f"compose: {name} waits for {dep} to be healthy, which has no healthcheck")
    for name in compose_nodes(ex["compose"]):
        deps = ex["compose"]["services"][name].get("depends_on") or {}
        for needed in ("postgres", "redis"):
            if (deps.get(needed) or {}).get("condition") != "service_healthy":
                problems.append(f"compose: {name} does not wait for {needed} to be healthy")
    return problems


def redis_problems(ex: dict[str, Any]) -> list[str]:
    problems = []
    compose, livekit, sip = ex["compose"], ex["livekit"], ex["sip"]
    address = (livekit.get("redis") or {}).get("address")
    if not address:
        return ["livekit.yaml: no redis address (LiveKit runs single-node without one)"]
    host = address.rsplit(":", 1)[0]
    if host not in compose["services"]:
        problems.append(f"livekit.yaml: redis {address} is not a service of the compose file")
    nodes = livekit_services(compose)
    if len(nodes) < 2:
        problems.append(f"compose: {len(nodes)} livekit-server node(s), multi-node mode needs two or more")
    for name, service in nodes.items():
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", []) if isinstance(v, str)}
        command = service.get("command") or []
        config = command[command.index("--config") + 1] if "--config" in command else None
        if config is None or mounts.get(config) != "./livekit.yaml":
            problems.append(f"compose: {name} does not run with ./livekit.yaml (--config {config}, mounts {mounts})")
        env = service.get("environment") or {}
        if "REDIS_HOST" in env or any("--redis-host" in str(c) for c in command):
            problems.append(f"compose: {name} overrides livekit.yaml's redis address")
    sip_address = (sip.get("redis") or {}).get("address")
    if sip_address != address:
        problems.append(f"sip.yaml: redis {sip_address}, not the LiveKit nodes' {address}")
    for name, service in sip_services(compose).items():
        if "./sip.yaml:/sip/config.yaml:ro" not in service.get("volumes", []):
            problems.append(f"compose: {name} does not mount ./sip.yaml at /sip/config.yaml")
    if not sip_services(compose):
        problems.append("compose: no livekit-sip service")
    for name, env in compose_nodes(compose).items():
        url = env.get(PREFIX + "REDIS_URL", "")
        if url and _redis_address(substitute(url, {})) != address:
            problems.append(f"compose: {name}'s REDIS_URL is not the LiveKit nodes' Redis {address}")
    return problems


def secret_problems(ex: dict[str, Any]) -> list[str]:
    problems = []
    for name, service in ex["compose"]["services"].items():
        env = service.get("environment") or {}
        for key, value in env.items():
            secret = key in SECRET_SETTINGS or (not key.startswith(PREFIX) and OTHER_SECRET.search(key))
            if secret and literal_secret(str(value)):
                problems.append(f"compose: {name}'s {key} is written in the file, not taken from ${{VAR:?...}}")
    for key in ("keys", "key_file"):
        if key in ex["livekit"]:
            problems.append(f"livekit.yaml: `{key}` holds API secrets; LIVEKIT_KEYS comes from the environment")
    for key in ("api_key", "api_secret"):
        if key in ex["sip"]:
            problems.append(f"sip.yaml: `{key}` written in the file; livekit-sip reads LIVEKIT_{key.upper()} instead")
    for config in ("livekit", "sip"):
        if (ex[config].get("redis") or {}).get("password"):
            problems.append(f"{config}.yaml: a redis password written in the file")
    for key, value in k8s_env(ex["k8s"]).items():
        if key in SECRET_SETTINGS and not (isinstance(value, dict) and "secretKeyRef" in value):
            problems.append(f"kubernetes: {key} is not a secretKeyRef")
    for doc in ex["k8s"]:
        if doc and doc.get("kind") == "Secret" and any((doc.get("data") or {}, doc.get("stringData") or {})):
            problems.append(f"kubernetes: Secret {doc['metadata']['name']} carries values")
    written = re.findall(r"^(\w+)=(.+)$", ex["env_example"], re.M)
    if written:
        problems.append(f".env.example: values given for {[k for k, _ in written]} (it lists the names only)")
    needed = {m.group(1) for m in INTERPOLATION.finditer(yaml.safe_dump(ex["compose"]))}
    listed = set(re.findall(r"^(\w+)=", ex["env_example"], re.M))
    if needed - listed:
        problems.append(f".env.example: does not list {sorted(needed - listed)}")
    return problems


def node_settings(ex: dict[str, Any]) -> Settings:
    """One compose node's settings, its `${...}` placeholders filled with dummy values: what `voxarena serve`
    would read there (the image's own VOXARENA_* variables below the node's, as docker does)."""
    image_env = dict(re.findall(r"(VOXARENA_\w+)=(\S+)", (ROOT / "Dockerfile").read_text()))
    env = next(iter(compose_nodes(ex["compose"]).values()))
    return Settings.from_env({**image_env, **{k: substitute(v, {}) for k, v in env.items()}})


# --- the tests ---


def test_every_voxarena_variable_the_examples_name_is_a_setting() -> None:
    texts = {p.name: p.read_text() for p in sorted(DEPLOY.iterdir()) if p.is_file()}
    assert "docker-compose.yml" in texts and "kubernetes.yaml" in texts
    assert not unknown_settings(texts), f"not fields of Settings: {unknown_settings(texts)}"


def test_every_node_has_the_multi_node_settings_with_the_same_values(examples: dict[str, Any]) -> None:
    assert len(compose_nodes(examples["compose"])) >= 2
    problems = multi_node_problems(examples)
    assert not problems, problems


def test_grace_periods_outlast_the_drain_and_kubernetes_waits_in_prestop(examples: dict[str, Any]) -> None:
    problems = grace_problems(examples)
    assert not problems, problems


def test_probes_ask_health_on_the_api_port_and_nodes_wait_for_healthy_dependencies(
    examples: dict[str, Any],
) -> None:
    problems = probe_problems(examples)
    assert not problems, problems


def test_the_livekit_nodes_and_the_sip_bridge_share_one_redis(examples: dict[str, Any]) -> None:
    problems = redis_problems(examples)
    assert not problems, problems


def test_every_livekit_node_posts_its_webhooks_to_every_voxarena_node(examples: dict[str, Any]) -> None:
    problems = webhook_problems(examples)
    assert not problems, problems


def test_no_secret_is_written_in_the_examples(examples: dict[str, Any]) -> None:
    problems = secret_problems(examples)
    assert not problems, problems


def test_a_compose_node_environment_passes_the_settings_validation(examples: dict[str, Any]) -> None:
    settings = node_settings(examples)
    assert settings.database_url.startswith("postgresql://voxarena:dummy-postgres-password@postgres:5432/")
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.secret_key == "dummy-voxarena-secret-key"
    assert settings.livekit_api_secret == "dummy-livekit-api-secret"
    assert settings.drain_timeout_seconds == drain_seconds(next(iter(compose_nodes(examples["compose"]).values())))
    assert (settings.host, settings.port, str(settings.data_dir)) == ("0.0.0.0", 8080, "/data")


# --- each check notices a broken example ---


def _broken(change: Any) -> dict[str, Any]:
    ex = copy.deepcopy(_load())
    change(ex)
    return ex


def _node(ex: dict[str, Any], name: str = "voxarena-2") -> dict[str, Any]:
    return ex["compose"]["services"][name]


def _k8s_env_item(ex: dict[str, Any], name: str) -> dict[str, Any]:
    return next(item for item in k8s_container(ex["k8s"])["env"] if item["name"] == name)


def test_the_setting_check_notices_a_misspelt_variable() -> None:
    text = (DEPLOY / "kubernetes.yaml").read_text().replace("VOXARENA_DRAIN_TIMEOUT_SECONDS", "VOXARENA_DRAIN_TIMEOUT")
    assert unknown_settings({"kubernetes.yaml": text}) == ["kubernetes.yaml: VOXARENA_DRAIN_TIMEOUT"]


def test_the_multi_node_check_notices_a_missing_or_different_setting() -> None:
    def drop(ex: dict[str, Any]) -> None:
        _node(ex)["environment"] = {k: v for k, v in _node(ex)["environment"].items() if k != PREFIX + "SECRET_KEY"}

    assert multi_node_problems(_broken(drop)) == [f"compose: {PREFIX}SECRET_KEY missing on ['voxarena-2']"]

    def differ(ex: dict[str, Any]) -> None:
        _node(ex)["environment"] = {**_node(ex)["environment"], PREFIX + "REDIS_URL": "redis://redis:6379/1"}

    assert [p.split(":")[1] for p in multi_node_problems(_broken(differ))] == [
        f" {PREFIX}REDIS_URL differs between nodes"
    ]

    def one_replica(ex: dict[str, Any]) -> None:
        deployment(ex["k8s"])["spec"]["replicas"] = 1

    assert multi_node_problems(_broken(one_replica)) == ["kubernetes: replicas 1, a multi-node example needs several"]

    def per_pod(ex: dict[str, Any]) -> None:
        _k8s_env_item(ex, PREFIX + "SECRET_KEY")["valueFrom"] = {"fieldRef": {"fieldPath": "metadata.name"}}

    assert multi_node_problems(_broken(per_pod)) == [
        f"kubernetes: {PREFIX}SECRET_KEY comes from ['fieldRef'], not the same value for every pod"
    ]

    def same_name(ex: dict[str, Any]) -> None:
        _node(ex)["environment"] = {**_node(ex)["environment"], PREFIX + "NODE_ID": "voxarena-1"}

    assert multi_node_problems(_broken(same_name)) == [
        f"compose: the nodes' {PREFIX}NODE_ID are not one each: ['voxarena-1', 'voxarena-1', 'voxarena-3']"
    ]

    def one_name_for_all_pods(ex: dict[str, Any]) -> None:
        item = _k8s_env_item(ex, PREFIX + "NODE_ID")
        del item["valueFrom"]
        item["value"] = "voxarena"

    assert multi_node_problems(_broken(one_name_for_all_pods)) == [
        f"kubernetes: {PREFIX}NODE_ID is 'voxarena', not each pod's own name"
    ]


def test_the_webhook_check_notices_a_node_left_out_or_another_key() -> None:
    def left_out(ex: dict[str, Any]) -> None:
        ex["livekit"]["webhook"]["urls"] = ex["livekit"]["webhook"]["urls"][:2]

    assert [p.split(",")[0] for p in webhook_problems(_broken(left_out))] == [
        "livekit.yaml: webhooks go to ['http://voxarena-1:8080/api/livekit/webhook'"
    ]

    def other_key(ex: dict[str, Any]) -> None:
        ex["livekit"]["webhook"]["api_key"] = "other"

    assert webhook_problems(_broken(other_key)) == [
        "livekit.yaml: webhooks signed with 'other', the nodes verify ['voxarena']",
        "compose: livekit-1's LIVEKIT_KEYS names 'voxarena', not 'other'",
        "compose: livekit-2's LIVEKIT_KEYS names 'voxarena', not 'other'",
    ]


def test_the_grace_check_notices_a_period_shorter_than_the_drain() -> None:
    def short(ex: dict[str, Any]) -> None:
        _node(ex)["stop_grace_period"] = "5m"

    assert grace_problems(_broken(short)) == [
        "compose: voxarena-2 stop_grace_period 300s is not past the 300s drain + margin"
    ]

    def longer_drain(ex: dict[str, Any]) -> None:
        ex["k8s"][0]["data"][DRAIN] = "320"

    assert grace_problems(_broken(longer_drain)) == [
        "kubernetes: terminationGracePeriodSeconds 330 is not past the 10s preStop + 320s drain + margin"
    ]

    def no_prestop(ex: dict[str, Any]) -> None:
        del k8s_container(ex["k8s"])["lifecycle"]

    assert grace_problems(_broken(no_prestop)) == [
        "kubernetes: no preStop hook giving the load balancer time to stop sending"
    ]

    def default_drain_unset_grace(ex: dict[str, Any]) -> None:  # Settings' default drain against Kubernetes' 30 s
        del ex["k8s"][0]["data"][DRAIN]
        del deployment(ex["k8s"])["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]

    drain = Settings().drain_timeout_seconds
    assert grace_problems(_broken(default_drain_unset_grace)) == [
        f"kubernetes: terminationGracePeriodSeconds 30 is not past the 10s preStop + {drain:g}s drain + margin"
    ]


def test_the_probe_check_notices_a_wrong_path_or_port() -> None:
    def path(ex: dict[str, Any]) -> None:
        k8s_container(ex["k8s"])["readinessProbe"]["httpGet"]["path"] = "/healthz"

    assert probe_problems(_broken(path)) == [
        "kubernetes: readinessProbe asks /healthz on port 8080, not /health on 8080"
    ]

    def port(ex: dict[str, Any]) -> None:
        k8s_container(ex["k8s"])["livenessProbe"]["httpGet"]["port"] = "worker-health"

    assert probe_problems(_broken(port)) == ["kubernetes: livenessProbe asks /health on port 8081, not /health on 8080"]

    def compose_check(ex: dict[str, Any]) -> None:
        _node(ex)["healthcheck"] = {**_node(ex)["healthcheck"], "test": ["CMD", "true"]}

    assert probe_problems(_broken(compose_check)) == [
        "compose: voxarena-2's healthcheck does not ask /health on port 8080"
    ]

    def started_only(ex: dict[str, Any]) -> None:
        _node(ex)["depends_on"] = {**_node(ex)["depends_on"], "postgres": {"condition": "service_started"}}

    assert probe_problems(_broken(started_only)) == ["compose: voxarena-2 does not wait for postgres to be healthy"]


def test_the_redis_check_notices_nodes_on_different_redis() -> None:
    def sip_elsewhere(ex: dict[str, Any]) -> None:
        ex["sip"]["redis"]["address"] = "redis-2:6379"

    assert redis_problems(_broken(sip_elsewhere)) == ["sip.yaml: redis redis-2:6379, not the LiveKit nodes' redis:6379"]

    def override(ex: dict[str, Any]) -> None:
        ex["compose"]["services"]["livekit-2"]["environment"]["REDIS_HOST"] = "other:6379"

    assert redis_problems(_broken(override)) == ["compose: livekit-2 overrides livekit.yaml's redis address"]

    def single(ex: dict[str, Any]) -> None:
        del ex["livekit"]["redis"]

    assert redis_problems(_broken(single)) == ["livekit.yaml: no redis address (LiveKit runs single-node without one)"]

    def other_config(ex: dict[str, Any]) -> None:
        ex["compose"]["services"]["livekit-2"]["volumes"] = ["./livekit-2.yaml:/etc/livekit.yaml:ro"]

    assert [p.split(" (")[0] for p in redis_problems(_broken(other_config))] == [
        "compose: livekit-2 does not run with ./livekit.yaml"
    ]


def test_the_secret_check_notices_a_written_secret() -> None:
    def literal(ex: dict[str, Any]) -> None:
        _node(ex)["environment"] = {**_node(ex)["environment"], PREFIX + "SECRET_KEY": "correct-horse-battery"}

    assert secret_problems(_broken(literal)) == [
        f"compose: voxarena-2's {PREFIX}SECRET_KEY is written in the file, not taken from ${{VAR:?...}}"
    ]

    def password_in_url(ex: dict[str, Any]) -> None:
        url = "postgresql://voxarena:hunter2@postgres:5432/voxarena"
        _node(ex)["environment"] = {**_node(ex)["environment"], PREFIX + "DATABASE_URL": url}

    assert secret_problems(_broken(password_in_url)) == [
        f"compose: voxarena-2's {PREFIX}DATABASE_URL is written in the file, not taken from ${{VAR:?...}}"
    ]

    def optional(ex: dict[str, Any]) -> None:  # a default would start a node with a known secret
        env = ex["compose"]["services"]["postgres"]["environment"]
        env["POSTGRES_PASSWORD"] = "${POSTGRES_PASSWORD:-voxarena}"

    assert secret_problems(_broken(optional)) == [
        "compose: postgres's POSTGRES_PASSWORD is written in the file, not taken from ${VAR:?...}"
    ]

    def livekit_keys(ex: dict[str, Any]) -> None:
        ex["compose"]["services"]["livekit-1"]["environment"]["LIVEKIT_KEYS"] = "voxarena: devsecret"

    assert secret_problems(_broken(livekit_keys)) == [
        "compose: livekit-1's LIVEKIT_KEYS is written in the file, not taken from ${VAR:?...}"
    ]

    def in_configs(ex: dict[str, Any]) -> None:
        ex["livekit"]["keys"] = {"k": "s"}
        ex["sip"]["api_secret"] = "s"

    assert secret_problems(_broken(in_configs)) == [
        "livekit.yaml: `keys` holds API secrets; LIVEKIT_KEYS comes from the environment",
        "sip.yaml: `api_secret` written in the file; livekit-sip reads LIVEKIT_API_SECRET instead",
    ]

    def k8s_value(ex: dict[str, Any]) -> None:
        item = _k8s_env_item(ex, PREFIX + "LIVEKIT_API_SECRET")
        del item["valueFrom"]
        item["value"] = "s"

    assert secret_problems(_broken(k8s_value)) == [f"kubernetes: {PREFIX}LIVEKIT_API_SECRET is not a secretKeyRef"]

    def example_value(ex: dict[str, Any]) -> None:
        ex["env_example"] = ex["env_example"].replace("VOXARENA_SECRET_KEY=\n", "VOXARENA_SECRET_KEY=changeme\n")

    assert secret_problems(_broken(example_value)) == [
        ".env.example: values given for ['VOXARENA_SECRET_KEY'] (it lists the names only)"
    ]


def test_the_settings_check_refuses_a_node_environment_that_does_not_validate() -> None:
    def mysql(ex: dict[str, Any]) -> None:
        _node(ex, "voxarena-1")["environment"] = {
            **_node(ex, "voxarena-1")["environment"],
            PREFIX + "DATABASE_URL": "mysql://voxarena:${POSTGRES_PASSWORD:?x}@db/voxarena",
        }

    with pytest.raises(ValueError, match="DATABASE_URL must start with postgresql://"):
        node_settings(_broken(mysql))

    def drain(ex: dict[str, Any]) -> None:
        _node(ex, "voxarena-1")["environment"] = {**_node(ex, "voxarena-1")["environment"], DRAIN: "five minutes"}

    with pytest.raises(ValueError, match="DRAIN_TIMEOUT_SECONDS"):
        node_settings(_broken(drain))
