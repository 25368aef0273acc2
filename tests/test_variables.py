"""Dynamic variables (core/variables.py): what fills an agent's {{placeholders}} and what is left as written."""

from __future__ import annotations

from datetime import UTC, datetime

from core.variables import call_values, fill, placeholders, unfilled

NOW = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)


def test_placeholders_are_filled_from_the_call_its_context_and_the_agents_defaults():
    agent = {"name": "Front Desk", "context_data": '{"clinic": "Lakeside", "customer_name": "caller"}'}
    values = call_values(
        {"customer_name": "Ada", "account": {"tier": "gold", "open": True}},
        agent=agent,
        from_number="+15550001",
        to_number="+15550002",
        direction="inbound",
        session_id="s-1",
        now=NOW,
    )
    text = (
        "Hi {{ customer_name }} at {{clinic}} ({{agent_name}}), calling {{to_number}} from {{from_number}} "
        "({{direction}}) on {{current_date}} at {{current_time}}; tier {{account.tier}}, open {{account.open}}, "
        "account {{account}}."
    )
    assert fill(text, values) == (
        "Hi Ada at Lakeside (Front Desk), calling +15550002 from +15550001 (inbound) on 2026-12-04 at 09:30 UTC; "
        'tier gold, open true, account {"open": true, "tier": "gold"}.'
    )


def test_a_placeholder_nothing_fills_is_left_as_written_and_nothing_else_changes():
    assert fill("Hello {{name}}, {{ missing.deep }} {{not a placeholder}} {single}", {"name": "Bo"}) == (
        "Hello Bo, {{ missing.deep }} {{not a placeholder}} {single}"
    )
    assert fill(None, {"a": 1}) is None and fill("", {}) == ""


def test_saving_warns_of_placeholders_only_a_call_can_fill():
    fields = [("systemPrompt", "You help {{customer_name}} of {{clinic}} at {{to_number}}."), ("firstMessage", None)]
    assert placeholders(fields[0][1]) == ["customer_name", "clinic", "to_number"]
    assert unfilled(fields, context_keys=["clinic"]) == [
        "systemPrompt: {{customer_name}} is filled only when a call's context or variables give it; "
        "otherwise it stays as written"
    ]
    assert unfilled(fields, context_keys=["clinic", "customer_name"]) == []
