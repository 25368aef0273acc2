"""Ask your data (004's POST /api/ask): Gemini answers a question from figures the product computes itself.

The model never sees the database or writes SQL: it is offered the product's own metric functions (function
calling, typed arguments validated here before anything runs), each bound to the asking tenant, and it answers from
what they return. Every Gemini round is metered into the ledger like a call's LLM usage (source ``ask``)."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from google import genai
from google.genai import types
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.settings import Settings
from core.store import agents as agents_repo
from core.store import usage as ledger
from core.store.db import Store
from core.store.errors import StoreError
from pipelines.metering import make_event
from pipelines.pricing import PriceBook

from ..errors import ApiError, BadGateway, Unavailable
from ..schemas.metrics import Metric
from . import analytics, metrics

log = logging.getLogger("voxarena.ask")

Day = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="A date, YYYY-MM-DD")


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PeriodArgs(_Args):
    start: str = Day
    end: str = Day
    campaign: str | None = Field(default=None, description="Only this campaign (exact name)")


class ByCampaignArgs(_Args):
    start: str = Day
    end: str = Day


class TimeseriesArgs(PeriodArgs):
    metric: Metric


class CallArgs(_Args):
    period: Literal["day", "week", "month", "year"] | None = Field(
        default=None, description="The last 1, 7, 30 or 365 days; omit for all time"
    )


class AgentArgs(CallArgs):
    agent_id: str = Field(min_length=1, max_length=200)


class NoArgs(_Args):
    pass


def tools(store: Store, owner_id: str, terms: tuple[str, ...]) -> dict[str, tuple[str, type[_Args], Any]]:
    """The functions the model may call, each bound to the asking tenant."""

    async def summary(a: PeriodArgs) -> dict[str, Any]:
        return await metrics.summary(store, owner_id, metrics.period(a.start, a.end), a.campaign, terms)

    async def by_campaign(a: ByCampaignArgs) -> dict[str, Any]:
        return await metrics.by_campaign(store, owner_id, metrics.period(a.start, a.end), terms)

    async def timeseries(a: TimeseriesArgs) -> dict[str, Any]:
        return await metrics.timeseries(store, owner_id, a.metric, metrics.period(a.start, a.end), a.campaign, terms)

    async def cost_breakdown(a: PeriodArgs) -> dict[str, Any]:
        return await metrics.cost_breakdown(store, owner_id, metrics.period(a.start, a.end), a.campaign, None)

    async def call_analytics(a: CallArgs) -> dict[str, Any]:
        return await analytics.summary(store, owner_id, terms, period=a.period, tenant_id=None)

    async def agent_analytics(a: AgentArgs) -> dict[str, Any]:
        await store.read(agents_repo.get_row, owner_id, a.agent_id)  # another tenant's agent: not found
        return await analytics.agent(store, owner_id, a.agent_id, terms, period=a.period)

    async def campaigns(a: NoArgs) -> dict[str, Any]:
        return await metrics.campaigns(store, owner_id)

    return {
        "metrics_summary": (
            "Outreach sends, replies, opt-outs, bounces, their rates (percent), total cost in USD, "
            "cost per reply and calls, compared with the previous period of equal length.",
            PeriodArgs,
            summary,
        ),
        "metrics_by_campaign": (
            "Per campaign: outreach figures, cost, cost per reply, and its voice calls with "
            "successful calls and cost per successful call.",
            ByCampaignArgs,
            by_campaign,
        ),
        "metrics_timeseries": ("One metric per day over a period.", TimeseriesArgs, timeseries),
        "cost_breakdown": (
            "Costs (USD), tokens and ledger entries by provider, by model and by day.",
            PeriodArgs,
            cost_breakdown,
        ),
        "call_analytics": (
            "Voice calls: count, minutes, average duration (s), success rate (0..1), busiest hour, "
            "top agents, cost and cost per successful call.",
            CallArgs,
            call_analytics,
        ),
        "agent_analytics": (
            "One agent's calls, success rate, hourly and daily figures and cost per successful call.",
            AgentArgs,
            agent_analytics,
        ),
        "list_campaigns": ("The names of every campaign.", NoArgs, campaigns),
    }


def declarations(table: dict[str, tuple[str, type[_Args], Any]]) -> list[types.FunctionDeclaration]:
    out = []
    for name, (doc, model, _) in table.items():
        schema = model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        out.append(types.FunctionDeclaration(name=name, description=doc, parameters_json_schema=schema))
    return out


async def run_tool(table: dict[str, tuple[str, type[_Args], Any]], name: str, args: dict[str, Any]) -> dict[str, Any]:
    """One function call from the model: unknown names and bad arguments are answered as errors it can read."""
    if name not in table:
        return {"error": f"unknown function {name!r}"}
    _, model, fn = table[name]
    try:
        parsed = model.model_validate(args or {})
    except ValidationError as e:
        return {"error": "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())}
    try:
        return await fn(parsed)
    except ApiError as e:
        return {"error": e.detail}
    except StoreError as e:  # e.g. another tenant's agent: not found, as over HTTP
        return {"error": str(e)}


INSTRUCTIONS = (
    "You answer questions about a voice-agent and outreach operation's costs and outcomes. Today is {today} (UTC). "
    "Get every figure you state from the functions offered; never guess or compute figures the functions did not "
    "return. Money is in USD, rates ending in _pct are percentages, success_rate is a fraction of 1. "
    "Answer in one or two plain sentences."
)


async def ask(store: Store, book: PriceBook, settings: Settings, owner_id: str, question: str) -> dict[str, Any]:
    if not settings.google_api_key:
        raise Unavailable("ask-your-data needs an LLM: set VOXARENA_GOOGLE_API_KEY (Gemini)")
    table = tools(store, owner_id, settings.success_outcomes)
    config = types.GenerateContentConfig(
        system_instruction=INSTRUCTIONS.format(today=datetime.now(UTC).date().isoformat()),
        tools=[types.Tool(function_declarations=declarations(table))],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        temperature=0,
    )
    http = types.HttpOptions(base_url=settings.google_base_url) if settings.google_base_url else None
    contents: list[types.Content] = [types.Content(role="user", parts=[types.Part.from_text(text=question)])]
    request_id = uuid.uuid4().hex
    client = genai.Client(api_key=settings.google_api_key, http_options=http)
    try:
        for round_ in range(settings.ask_max_rounds + 1):
            try:
                response = await client.aio.models.generate_content(
                    model=settings.gemini_model, contents=contents, config=config
                )
            except Exception as e:  # the provider's failure, said plainly
                log.warning("ask: Gemini request failed: %s", e)
                raise BadGateway(f"the LLM request failed: {e}") from None
            await _meter(store, book, settings, owner_id, f"ask:{request_id}:{round_}", response)
            calls = response.function_calls or []
            if not calls:
                answer = (response.text or "").strip()
                if not answer:
                    raise BadGateway("the LLM returned no answer")
                return {"answer": answer, "timestamp": _now()}
            if round_ == settings.ask_max_rounds:
                break
            model_turn = response.candidates[0].content if response.candidates else None
            contents.append(
                model_turn
                or types.Content(
                    role="model",
                    parts=[types.Part.from_function_call(name=c.name or "", args=c.args or {}) for c in calls],
                )
            )
            parts = []
            for c in calls:
                result = await run_tool(table, c.name or "", dict(c.args or {}))
                parts.append(
                    types.Part.from_function_response(
                        name=c.name or "", response=json.loads(json.dumps(result, default=str))
                    )
                )
            contents.append(types.Content(role="user", parts=parts))
    finally:
        await client.aio.aclose()
    raise BadGateway(f"the LLM kept calling functions after {settings.ask_max_rounds} rounds without answering")


async def _meter(
    store: Store, book: PriceBook, settings: Settings, owner_id: str, key: str, response: types.GenerateContentResponse
) -> None:
    usage = response.usage_metadata
    if usage is None:
        return
    events = []
    for kind, tokens in (("input", usage.prompt_token_count), ("output", usage.candidates_token_count)):
        if tokens:
            events.append(
                make_event(
                    book,
                    key=f"{key}:{kind}",
                    owner_id=owner_id,
                    session_id=None,
                    agent_id=None,
                    provider="gemini",
                    model=settings.gemini_model,
                    event_type="llm_tokens",
                    token_kind=kind,
                    quantity=Decimal(tokens),
                    source="ask",
                ).as_dict()
            )
    if events:
        await store.write(ledger.record_events, events)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
