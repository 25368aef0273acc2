"""Render the route table and the settings to markdown, between markers in docs/api.md and docs/settings.md.

``python -m api.docgen`` rewrites the generated blocks in place; ``python -m api.docgen --check`` changes nothing
and exits 1 naming each file whose blocks differ (tests/test_docs.py runs the same comparison). A block is the text
between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``; the prose around it is written by hand.
Routes are rendered one table per tag (``routes:<tag>``), so each area of docs/api.md carries its own routes, and a
tag without a block in the file is an error: a new area cannot go undocumented.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import Field
from pathlib import Path
from typing import Any

from api.app import all_routes
from api.routing import Route
from core.settings import PREFIX, SETTINGS

ROOT = Path(__file__).resolve().parents[1]
API_DOC = Path("docs/api.md")
SETTINGS_DOC = Path("docs/settings.md")
COMMAND = "python -m api.docgen"

_BLOCK = re.compile(r"(<!-- generated:(?P<name>[\w:-]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.S)


class DocgenError(Exception):
    """A file's markers do not match what there is to generate."""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _names(model: Any) -> str:
    fields = getattr(model, "model_fields", {})
    return ", ".join(f"`{f.alias or name}`" for name, f in fields.items())


def _answer(route: Route) -> str:
    if route.status == 101:
        return "101 websocket"
    if route.response is None:
        return "/".join(str(s) for s in (route.status, *route.also))
    shape = route.response.__name__
    if route.many:
        shape = f"{shape}[]"
    if route.nullable:
        shape = f"{shape} or null"
    statuses = "/".join(str(s) for s in (route.status, *route.also))
    return f"{statuses} `{shape}`"


def route_tags(routes: Iterable[Route] | None = None) -> list[str]:
    """Every tag, in the order the route table first names it."""
    seen: dict[str, None] = {}
    for r in all_routes() if routes is None else routes:
        seen.setdefault(r.tag, None)
    return list(seen)


def render_routes(tag: str, routes: Iterable[Route] | None = None) -> str:
    """One markdown table of the routes with this tag, in route-table order."""
    rows = [
        "| Method | Path | Summary | Body | Query | Answers | Errors |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in all_routes() if routes is None else routes:
        if r.tag != tag:
            continue
        summary = r.summary + (" (public)" if r.public else "")
        body = f"`{r.body.__name__}`" if r.body is not None else ""
        query = _names(r.query) if r.query is not None else ""
        errors = ", ".join(str(e) for e in r.errors)
        rows.append(f"| {r.method} | `{r.path}` | {_cell(summary)} | {body} | {query} | {_answer(r)} | {errors} |")
    return "\n".join(rows) + "\n"


def _default(f: Field[Any]) -> str:
    value = f.default
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, tuple):
        text = ", ".join(str(v) for v in value)
    else:
        text = str(value)
    return f"`{_cell(text)}`" if text else ""


def render_settings(settings: Iterable[Field[Any]] = SETTINGS) -> str:
    """The settings table: environment name, default and the field's own ``doc`` (and older name)."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for f in settings:
        doc = f.metadata.get("doc", "")
        if not f.repr:
            doc += " Secret: never in logs, reprs or `/health`."
        if "alias" in f.metadata:
            doc += f" Older name, still read: `{PREFIX}{f.metadata['alias']}`."
        rows.append(f"| `{PREFIX}{f.name.upper()}` | {_default(f)} | {_cell(doc)} |")
    return "\n".join(rows) + "\n"


def blocks() -> dict[Path, dict[str, str]]:
    """What each documentation file's generated blocks must hold."""
    routes = {f"routes:{tag}": render_routes(tag) for tag in route_tags()}
    return {API_DOC: routes, SETTINGS_DOC: {"settings": render_settings()}}


def fill(text: str, wanted: Mapping[str, str], *, where: str = "") -> str:
    """The text with every generated block replaced; every wanted block must have its markers, and no others."""
    found = [m.group("name") for m in _BLOCK.finditer(text)]
    missing = [name for name in wanted if name not in found]
    unknown = [name for name in found if name not in wanted]
    duplicated = sorted({name for name in found if found.count(name) > 1})
    if missing or unknown or duplicated:
        raise DocgenError(
            f"{where}: generated blocks missing {missing}, unknown {unknown}, repeated {duplicated} "
            f"(add or remove the <!-- generated:NAME --> ... <!-- /generated:NAME --> markers)"
        )
    return _BLOCK.sub(lambda m: m.group(1) + wanted[m.group("name")] + m.group(4), text)


def stale(root: Path = ROOT) -> list[Path]:
    """The documentation files whose generated blocks differ from what the code says now."""
    return [
        rel
        for rel, wanted in blocks().items()
        if fill((root / rel).read_text(), wanted, where=str(rel)) != (root / rel).read_text()
    ]


def write(root: Path = ROOT) -> list[Path]:
    """Regenerate every block in place; the files that changed."""
    changed = []
    for rel, wanted in blocks().items():
        path = root / rel
        old = path.read_text()
        new = fill(old, wanted, where=str(rel))
        if new != old:
            path.write_text(new)
            changed.append(rel)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    try:
        if args.check:
            out_of_date = stale()
            for rel in out_of_date:
                print(f"{rel} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1 if out_of_date else 0
        for rel in write():
            print(f"rewrote {rel}")
    except DocgenError as e:
        print(e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
