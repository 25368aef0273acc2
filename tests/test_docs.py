"""The README documents every setting and every route, and CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

from api.app import all_routes
from core.settings import PREFIX, SETTINGS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented():
    missing = [PREFIX + f.name.upper() for f in SETTINGS if f"`{PREFIX}{f.name.upper()}`" not in README]
    assert not missing, f"undocumented settings: {missing}"


def test_every_route_is_in_the_route_table():
    table = set(re.findall(r"^\| (GET|POST|PUT|DELETE|PATCH) \| `([^`]+)` \|", README, re.M))
    missing = [(r.method, r.path) for r in all_routes() if (r.method, r.path) not in table]
    assert not missing, f"routes missing from README: {missing}"


def test_readme_opens_with_the_run_and_test_commands_and_ci_calls_the_test_command():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make run", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
