"""Dynamic variables: ``{{name}}`` placeholders in an agent's ``systemPrompt`` and ``firstMessage``, filled per call
from the call's context (Phony's ``context``, an outbound call's ``variables``, what the pre-call webhook returned)
and the call itself (``from_number``, ``to_number``, ``direction``, ``agent_name``, ``session_id``, and the date
and time at its start in UTC). A dotted name reaches into a nested object (``{{customer.name}}``).

A placeholder nothing fills is left as written, never a failure: the agent's responses list such names as warnings
when they are saved (`unfilled`), unless they are context keys a call is expected to bring."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\}\}")
BUILT_IN = ("from_number", "to_number", "direction", "agent_name", "session_id", "current_date", "current_time")


def placeholders(text: str | None) -> list[str]:
    return list(dict.fromkeys(PLACEHOLDER.findall(text or "")))


def agent_defaults(agent: dict[str, Any]) -> dict[str, Any]:
    """An agent's own contextData (a raw row's JSON text or a record's dict): its variables' defaults."""
    data = agent.get("context_data")
    if isinstance(data, str):
        data = json.loads(data)
    return data if isinstance(data, dict) else {}


def call_values(
    context: dict[str, Any] | None,
    *,
    agent: dict[str, Any] | None = None,
    from_number: str | None = None,
    to_number: str | None = None,
    direction: str | None = None,
    agent_name: str | None = None,
    session_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """What a call's placeholders are filled from: the call's own facts, the `agent`'s contextData as defaults, the
    call's context over them."""
    now = now or datetime.now(UTC)
    own = {
        "from_number": from_number,
        "to_number": to_number,
        "direction": direction,
        "agent_name": agent_name or (agent or {}).get("name"),
        "session_id": session_id,
        "current_date": now.strftime("%Y-%m-%d"),
        "current_time": now.strftime("%H:%M UTC"),
    }
    defaults = agent_defaults(agent) if agent is not None else {}
    return {**{k: v for k, v in own.items() if v is not None}, **defaults, **(context or {})}


def _lookup(values: dict[str, Any], name: str) -> Any:
    if name in values:
        return values[name]
    node: Any = values
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def fill(text: str | None, values: dict[str, Any]) -> str | None:
    """`text` with each placeholder that `values` fills replaced; the others left as they are."""
    if not text or "{{" not in text:
        return text

    def one(match: re.Match[str]) -> str:
        value = _lookup(values, match.group(1))
        return match.group(0) if value is None else _text(value)

    return PLACEHOLDER.sub(one, text)


def unfilled(fields: Iterable[tuple[str, str | None]], context_keys: Iterable[str] = ()) -> list[str]:
    """Warnings for the placeholders of `fields` (wire name, text) that no built-in value and none of the agent's own
    context keys fill: a call must bring them in its context or variables, or they stay visible."""
    known = set(BUILT_IN) | set(context_keys)
    out = []
    for field, text in fields:
        for name in placeholders(text):
            if name.split(".", 1)[0] not in known:
                out.append(
                    f"{field}: {{{{{name}}}}} is filled only when a call's context or variables give it; "
                    "otherwise it stays as written"
                )
    return out
