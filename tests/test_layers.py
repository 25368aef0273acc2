"""The layers' one-way dependencies, read from the source (every import, module-level or inside a function):
``api -> core``, ``worker -> core``, ``core -> pipelines``. Only the process entry point (the worker modules that
compose the API and the job) may import ``api``; the job never does."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the process: it runs the API and the AgentServer in one loop, so it composes both
ENTRY_POINT = {"worker/__main__.py", "worker/cli.py", "worker/server.py", "worker/connections.py"}
FORBIDDEN = {"pipelines": {"api", "core", "worker"}, "core": {"api", "worker"}, "worker": {"api"}, "api": {"worker"}}


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Every first-party top-level package ``path`` imports (relative imports resolved)."""
    package = path.relative_to(root).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                found.add(base[0] if base else (node.module or "").split(".")[0])
            elif node.module:
                found.add(node.module.split(".")[0])
    return found & {"api", "core", "worker", "pipelines"}


def modules(layer: str) -> list[Path]:
    return sorted(p for p in (ROOT / layer).rglob("*.py") if str(p.relative_to(ROOT)) not in ENTRY_POINT)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_module_imports_against_the_layers(layer):
    wrong = {str(p.relative_to(ROOT)): sorted(imports_of(p) & FORBIDDEN[layer]) for p in modules(layer)}
    wrong = {k: v for k, v in wrong.items() if v}
    assert not wrong, f"imports against the layers ({layer} may not import {sorted(FORBIDDEN[layer])}): {wrong}"


def test_the_check_sees_imports_inside_functions_and_relative_ones(tmp_path):
    # the checker itself: a job module with a function-level `from api...` and a relative import is caught
    (tmp_path / "worker").mkdir()
    job = tmp_path / "worker" / "job.py"
    job.write_text("def f():\n    from api.store import db\n")
    assert imports_of(job, tmp_path) == {"api"}
    (tmp_path / "core").mkdir()
    mod = tmp_path / "core" / "x.py"
    mod.write_text("from .y import z\nfrom pipelines import a\n")
    assert imports_of(mod, tmp_path) == {"core", "pipelines"}


def route_imports(path: Path) -> set[str]:
    """The route modules (``api/routes/*``) that ``path``, a route module, imports: its siblings by ``from .x``,
    ``from . import x`` or their absolute names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                found.update([node.module] if node.module else [a.name for a in node.names])
            elif node.level == 0 and node.module and node.module.startswith("api.routes"):
                rest = node.module.removeprefix("api.routes").lstrip(".")
                found.update([rest] if rest else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("api.routes.") for a in node.names if a.name.startswith("api.routes."))
    return {m.split(".")[0] for m in found}


def test_route_modules_are_wiring_and_import_no_other_route_module():
    """What two routes share (the web-call start, date bounds, websocket helpers) lives in api/services,
    api/schemas or api/websockets.py, never in a route module another one reaches into."""
    routes = sorted(p for p in (ROOT / "api" / "routes").glob("*.py") if p.name != "__init__.py")
    wrong = {p.name: sorted(route_imports(p)) for p in routes if route_imports(p)}
    assert not wrong, f"route modules importing route modules: {wrong}"


def test_the_route_check_sees_relative_and_absolute_imports(tmp_path):
    mod = tmp_path / "calls.py"
    mod.write_text(
        "from .livekit import x\nfrom . import sessions\nfrom api.routes.chat import y\nfrom ..errors import E\n"
    )
    assert route_imports(mod) == {"livekit", "sessions", "chat"}
