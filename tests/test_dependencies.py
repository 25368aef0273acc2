"""pyproject.toml declares exactly what the shipped packages import: nothing imported only through another package's
requirements (it could vanish with that package's next release), nothing declared that no code imports."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("api", "core", "worker", "pipelines")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_norm(re.match(r"[A-Za-z0-9_.-]+", d).group(0)) for d in deps}


def _imported_modules() -> dict[str, str]:
    """Every absolute import of a non-stdlib module in shipped code, as a dotted name -> one file importing it.
    ``from a.b import c`` yields ``a.b.c`` (c may be a module of a namespace package, like ``livekit.rtc``)."""
    found: dict[str, str] = {}
    for package in SHIPPED:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [f"{node.module}.{a.name}" for a in node.names]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in SHIPPED and top not in sys.stdlib_module_names:
                        found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def _module_owners() -> dict[str, set[str]]:
    """Dotted module name -> the installed distributions that ship it, from their RECORD files."""
    owners: dict[str, set[str]] = {}
    for dist in metadata.distributions():
        for file in dist.files or ():
            parts = file.parts
            if not parts or not parts[-1].endswith((".py", ".pyi", ".so", ".pyd")):
                continue
            stem = parts[-1].split(".")[0]
            dotted = ".".join([*parts[:-1], *([] if stem == "__init__" else [stem])])
            owners.setdefault(dotted, set()).add(_norm(dist.metadata["Name"]))
    return owners


def _distributions_imported() -> dict[str, str]:
    """Distribution -> one import that needs it; an import no installed distribution ships fails the test."""
    owners = _module_owners()
    needed: dict[str, str] = {}
    unowned = []
    for name, where in _imported_modules().items():
        parts = name.split(".")
        # the longest prefix that is a module: `livekit.agents.Agent` is the module `livekit.agents`
        prefix = next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in owners), None)
        if prefix is None:
            unowned.append(f"{name} ({where})")
            continue
        for dist in owners[prefix]:
            needed.setdefault(dist, f"{name} ({where})")
    assert not unowned, f"imports no installed distribution provides: {unowned}"
    return needed


def test_every_imported_distribution_is_declared():
    needed = _distributions_imported()
    undeclared = {dist: where for dist, where in needed.items() if dist not in _declared()}
    assert not undeclared, f"imported but not in pyproject.toml's dependencies: {undeclared}"


def test_every_declared_dependency_is_imported():
    unused = _declared() - set(_distributions_imported())
    assert not unused, f"declared in pyproject.toml but imported by no shipped module: {sorted(unused)}"
