"""The docs document every setting and every route, their generated tables match the code, the README stays short
and opens with the commands CI runs, and every relative link in the README and docs/ points at a file and heading
that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api import docgen
from api.app import all_routes
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
