"""The docs document every setting and every route, their generated tables match the code, the README stays short
and opens with the commands CI runs, and every relative link in the README and docs/ points at a file and heading
that exist; the README's tour calls routes that exist, with fields they read and answer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import AliasChoices, BaseModel

from api import docgen
from api.app import all_routes
from api.routing import Route
from core.settings import PREFIX, SETTINGS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
SETTINGS_DOC = (DOCS / "settings.md").read_text()
API_DOC = (DOCS / "api.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [PREFIX + f.name.upper() for f in SETTINGS if f"`{PREFIX}{f.name.upper()}`" not in SETTINGS_DOC]
    assert not missing, f"settings missing from docs/settings.md: {missing} (run `{docgen.COMMAND}`)"


def test_every_route_is_in_the_route_tables() -> None:
    table = set(re.findall(r"^\| (GET|POST|PUT|DELETE|PATCH) \| `([^`]+)` \|", API_DOC, re.M))
    missing = [(r.method, r.path) for r in all_routes() if (r.method, r.path) not in table]
    assert not missing, f"routes missing from docs/api.md: {missing} (run `{docgen.COMMAND}`)"


def test_the_generated_tables_match_the_code() -> None:
    stale = docgen.stale(ROOT)
    assert not stale, f"{[str(p) for p in stale]} differ from the code: run `{docgen.COMMAND}` and commit the result"


def test_the_generator_notices_a_changed_route_or_setting(tmp_path: Path) -> None:
    # a copy of the docs whose tables were edited by hand is stale, and regenerating restores the text exactly
    (tmp_path / "docs").mkdir()
    for rel in (docgen.API_DOC, docgen.SETTINGS_DOC):
        (tmp_path / rel).write_text((ROOT / rel).read_text())
    assert docgen.stale(tmp_path) == []
    api = tmp_path / docgen.API_DOC
    api.write_text(api.read_text().replace("| Create an agent |", "| Make an agent |", 1))
    settings = tmp_path / docgen.SETTINGS_DOC
    settings.write_text(settings.read_text().replace("| `8080` |", "| `8000` |", 1))
    assert docgen.stale(tmp_path) == [docgen.API_DOC, docgen.SETTINGS_DOC]
    assert docgen.write(tmp_path) == [docgen.API_DOC, docgen.SETTINGS_DOC]
    for rel in (docgen.API_DOC, docgen.SETTINGS_DOC):
        assert (tmp_path / rel).read_text() == (ROOT / rel).read_text()


def test_a_tag_without_its_block_is_an_error() -> None:
    text = API_DOC.replace("<!-- generated:routes:agents -->", "").replace("<!-- /generated:routes:agents -->", "")
    with pytest.raises(docgen.DocgenError, match=r"missing \['routes:agents'\]"):
        docgen.fill(text, docgen.blocks()[docgen.API_DOC])


def test_readme_opens_with_the_run_and_test_commands_and_ci_calls_the_test_command() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert first_block is not None, "README.md has no bash block"
    commands = [line.split("#")[0].strip() for line in first_block.group(1).strip().splitlines()]
    assert commands == ["make run", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_is_short() -> None:
    assert len(README.splitlines()) <= 250


def _anchors(text: str) -> set[str]:
    """GitHub's anchors for a markdown file's headings: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.*)$", text, re.M)}


@pytest.mark.parametrize("path", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in DOCS.glob("*.md"))])
def test_relative_links_point_at_files_and_headings_that_exist(path: str) -> None:
    source = ROOT / path
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", source.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        linked = source.parent / file if file else source
        if not linked.exists() or (anchor and anchor not in _anchors(linked.read_text())):
            broken.append(target)
    assert not broken, f"{path} links to missing files or headings: {broken}"


# The README's tour: every curl names a route of the route table, sends only fields its body model reads (bodies
# ignore unknown fields, so a misspelt one would pass silently), and reads only fields its answer has.

_ROUTES = {(r.method, re.sub(r"\{[^}]+\}", "{}", r.path)): r for r in all_routes()}


def _commands(markdown: str) -> list[str]:
    """The shell commands of the markdown's bash blocks, one per logical line (backslash continuations joined)."""
    blocks = re.findall(r"```bash\n(.*?)```", markdown, re.S)
    return [line for block in blocks for line in re.sub(r"\\\n\s*", " ", block).splitlines() if line.strip()]


def _route(command: str) -> Route:
    url = re.search(r"http://127\.0\.0\.1:8080(/[^\s)]*)", command)
    assert url, f"a curl without a URL of the product: {command}"
    given = re.search(r"-X\s+(\w+)", command)
    method = given.group(1) if given else "POST" if re.search(r"\s-d\s", command) else "GET"
    path = re.sub(r"\$\{?\w+\}?", "{}", url.group(1).split("?")[0])
    assert (method, path) in _ROUTES, f"{method} {url.group(1)} is not in the route table: {command}"
    return _ROUTES[(method, path)]


def _names(model: type[BaseModel] | None) -> set[str]:
    """Every name a model's field is read or written under (the field's, its alias, its validation aliases)."""
    names: set[str] = set()
    for name, f in (model.model_fields if model is not None else {}).items():
        names.update({name, f.alias or name})
        choices = f.validation_alias.choices if isinstance(f.validation_alias, AliasChoices) else [f.validation_alias]
        names.update(c for c in choices if isinstance(c, str))
    return names


def _body_keys(command: str) -> set[str]:
    """The top-level keys of the JSON a curl sends with ``-d '...'`` or ``-d "..."`` (shell variables as strings)."""
    sent = re.search(r"""\s-d\s+(?:'([^']*)'|"((?:[^"\\]|\\.)*)")""", command)
    if sent is None:
        return set()
    text = sent.group(1) if sent.group(1) is not None else sent.group(2).replace('\\"', '"')
    return set(json.loads(re.sub(r"\$\{?\w+\}?", "x", text)))


def _read_keys(command: str) -> set[str]:
    return set(re.findall(r"json\.load\(sys\.stdin\)\[\"(\w+)\"\]", command))


def _shown_keys(comment: str) -> set[str]:
    """The field names of a ``# {a, "b": …, c: [...], ...}`` comment that shows an answer."""
    return set(re.findall(r"[{,]\s*\"?(\w+)\"?", comment)) if comment.lstrip("# ").startswith("{") else set()


def tour_problems(markdown: str) -> list[str]:
    problems: list[str] = []
    captured: dict[str, Route] = {}
    last: Route | None = None
    for command in _commands(markdown):
        code, _, comment = command.partition("# ")
        if "curl" in code:
            route = last = _route(code)
            capture = re.match(r"\s*(\w+)=\$\(curl", code)
            if capture:
                captured[capture.group(1)] = route
            extra = _body_keys(code) - _names(route.body)
            if extra:
                problems.append(f"{route.method} {route.path} does not read {sorted(extra)}")
        elif echoed := re.search(r"\becho \"\$(\w+)\"", code):
            last = captured.get(echoed.group(1))
        if last is not None:
            unknown = (_read_keys(code) | _shown_keys(comment)) - _names(last.response)
            if unknown:
                problems.append(f"{last.method} {last.path} answers no {sorted(unknown)}")
    return problems


def test_the_readme_tour_uses_routes_and_fields_that_exist() -> None:
    assert "curl" in README
    problems = tour_problems(README)
    assert not problems, f"README.md's tour disagrees with the route table: {problems}"


def test_the_tour_check_notices_a_wrong_route_field_or_answer() -> None:
    good = r"""
```bash
OUT=$(curl -s -d "{\"agent_id\":\"$AGENT\",\"phone_number\":\"+15551234567\"}" \
  http://127.0.0.1:8080/api/calls/outbound)
echo "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["call_id"])'   # {"room_name": "…", ...}
curl -s -d '{"agentId":"a"}' http://127.0.0.1:8080/api/livekit/token
# {token, roomName, sessionId, serverUrl}
```
"""
    assert tour_problems(good) == []
    assert tour_problems(good.replace("phone_number", "phone")) == ["POST /api/calls/outbound does not read ['phone']"]
    assert tour_problems(good.replace("agentId", "agent")) == ["POST /api/livekit/token does not read ['agent']"]
    assert tour_problems(good.replace('["call_id"]', '["callId"]')) == [
        "POST /api/calls/outbound answers no ['callId']"
    ]
    assert tour_problems(good.replace('"room_name"', '"room"')) == ["POST /api/calls/outbound answers no ['room']"]
    assert tour_problems(good.replace("serverUrl", "url")) == ["POST /api/livekit/token answers no ['url']"]
    with pytest.raises(AssertionError, match="not in the route table"):
        tour_problems(good.replace("/api/calls/outbound", "/api/call/outbound"))


# Routes the dashboard module adds beside the route table (api/dashboard/__init__.py).
_DASHBOARD_ROUTES = {("GET", "/"), ("GET", "/static/{}/{}")}
# docs/outbound-http.md belongs to the outbound address policy's work and names two routes at once
# ("`POST`/`PUT /api/v1/clients`"), so it is left out of the exact check below.
_PROSE = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in DOCS.glob("*.md") if p.name != "outbound-http.md")]


def named_routes_missing(text: str) -> list[str]:
    """Each ``METHOD /path`` the text names that neither the route table nor the dashboard serves."""
    missing = []
    for method, path in re.findall(r"\b(GET|POST|PUT|DELETE|PATCH) (/[\w/{}.$:-]*)", text):
        key = (method, re.sub(r"\{[^}]+\}|\$\{?\w+\}?|:\w+", "{}", path.rstrip(".").split("?")[0].rstrip("/") or "/"))
        if key not in _ROUTES and key not in _DASHBOARD_ROUTES:
            missing.append(f"{method} {path}")
    return missing


@pytest.mark.parametrize("path", _PROSE)
def test_every_route_the_docs_name_exists(path: str) -> None:
    missing = named_routes_missing((ROOT / path).read_text())
    assert not missing, f"{path} names routes the route table does not have: {missing}"


def test_the_named_route_check_notices_a_route_that_is_not_there() -> None:
    assert named_routes_missing("`POST /api/agents`, `GET /api/sessions/{id}/cost-breakdown`, GET /.") == []
    assert named_routes_missing("`DELETE /api/sessions/{id}` and `GET /api/agent`") == [
        "DELETE /api/sessions/{id}",
        "GET /api/agent",
    ]
