"""Post-call analysis: the agent's own LLM turns the transcript into a validated CallAnalysis (structured output),
with one retry on invalid output; a second failure is stored as failed, with its reason. With fallback LLMs each
attempt goes down the chain like a turn does, the primary first. The job runs it after a call; the API process after
a text or ConversationRelay conversation (``api/services/chat.py``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectionError, APIConnectOptions, llm
from pydantic import BaseModel, Field, ValidationError

from core.store import sessions as repo
from core.store.db import Store
from pipelines.builder import FALLBACK_ATTEMPT_TIMEOUT, FallbackLLM
from pipelines.metering import CallMeter

log = logging.getLogger("voxarena.analysis")

INSTRUCTIONS = (
    "You analyse transcripts of phone calls between a caller (USER) and a voice agent (AGENT). "
    "Reply with one JSON object and nothing else, with exactly these fields: "
    '"summary" (2-3 sentences), "sentiment" ("positive", "neutral" or "negative": the caller\'s), '
    '"sentiment_score" (a number from 0 to 1, 0 very negative, 0.5 neutral, 1 very positive), '
    '"topics" (a list of short strings), "outcome" (one short phrase: what the call achieved), '
    '"action_items" (a list of follow-ups, possibly empty).'
)
MAX_ATTEMPTS = 2


class CallAnalysis(BaseModel):
    summary: str
    sentiment: Literal["positive", "neutral", "negative"]
    sentiment_score: float = Field(ge=0.0, le=1.0)
    topics: list[str]
    outcome: str
    action_items: list[str]


def transcript_text(items: list[dict[str, Any]]) -> str:
    return "\n".join(f"{i['speaker']}: {i['content']}" for i in items)


UsageHook = Callable[[int, llm.LLM[Any], int, int], Awaitable[None]]  # (attempt, the LLM that answered, input, output)

# In a chain each LLM gets one try within the adapter's per-attempt timeout, as in a call: a failed one hands over.
CHAIN_ATTEMPT = APIConnectOptions(max_retry=0, timeout=FALLBACK_ATTEMPT_TIMEOUT)


async def _ask_one(
    model: llm.LLM[Any], chat_ctx: llm.ChatContext, conn_options: APIConnectOptions
) -> tuple[str, int, int]:
    parts: list[str] = []
    prompt = completion = 0
    # The plugins' chat() takes a response_format; LLM's abstract signature does not name it.
    async with model.chat(
        chat_ctx=chat_ctx,
        response_format=CallAnalysis,  # type: ignore[call-arg]
        conn_options=conn_options,
    ) as stream:
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                parts.append(chunk.delta.content)
            if chunk.usage is not None:
                prompt, completion = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
    return "".join(parts), prompt, completion


async def _ask(model: llm.LLM[Any], chat_ctx: llm.ChatContext) -> tuple[str, int, int, llm.LLM[Any]]:
    """The reply, its tokens and the LLM that gave it. LiveKit's FallbackAdapter takes no ``response_format``, so a
    chain is walked here, in the adapter's order; this also keeps the adapter's recovery probes (full requests
    nobody meters) out of the analysis. Raises naming every LLM's failure when none answered."""
    if not isinstance(model, FallbackLLM):
        return (*await _ask_one(model, chat_ctx, DEFAULT_API_CONNECT_OPTIONS), model)
    failures = []
    for n, instance in enumerate(model.instances, 1):
        try:
            return (*await _ask_one(instance, chat_ctx, CHAIN_ATTEMPT), instance)
        except Exception as e:
            failures.append(f"{instance.provider} {instance.model}: {e}")
            if n < len(model.instances):  # the last failure is logged with the attempt's
                log.warning("analysis by %s %s failed, trying the next LLM: %s", instance.provider, instance.model, e)
    raise APIConnectionError("; then ".join(failures), retryable=False)


def parse(text: str) -> CallAnalysis:
    cleaned = text.strip()
    if cleaned.startswith("```"):  # some models fence JSON even in JSON mode
        cleaned = cleaned.strip("`").removeprefix("json").strip()
    return CallAnalysis.model_validate(json.loads(cleaned))


async def analyse(
    model: llm.LLM[Any], items: list[dict[str, Any]], on_usage: UsageHook | None = None
) -> tuple[CallAnalysis | None, str | None, int]:
    """Returns (analysis, error, attempts)."""
    if not items:
        return None, "no transcript to analyse", 0
    chat_ctx = llm.ChatContext.empty()
    chat_ctx.add_message(role="system", content=INSTRUCTIONS)
    chat_ctx.add_message(role="user", content=f"Transcript:\n{transcript_text(items)}")
    error = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            text, prompt, completion, served = await _ask(model, chat_ctx)
            if on_usage is not None:
                await on_usage(attempt, served, prompt, completion)
        except Exception as e:  # provider failure: retry once like invalid output, then give up
            error = f"LLM request failed: {e}"
            log.warning("analysis attempt %d failed: %s", attempt, error)
            continue
        try:
            return parse(text), None, attempt
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'output'}: {x['msg']}" for x in e.errors())
            error = f"invalid analysis output: {problems[:300]}"
        except ValueError as e:  # not JSON at all
            error = f"invalid analysis output: {str(e)[:300]}"
        log.warning("analysis attempt %d: %s", attempt, error)
        chat_ctx.add_message(role="assistant", content=text)
        chat_ctx.add_message(
            role="user", content=f"That reply was not valid ({error}). Reply again with only the JSON object."
        )
    return None, error, MAX_ATTEMPTS


async def run_and_store(
    store: Store, session_id: str, model: llm.LLM[Any], *, meter: CallMeter | None = None
) -> CallAnalysis | None:
    items = await store.read(repo.items_for, session_id)
    if not any(i["speaker"] == "USER" for i in items):
        # Nothing the caller said: an analysis would describe only the agent's greeting, and bill for it.
        reason = "skipped: the caller never spoke"
        await store.write(lambda db: repo.skip_analysis(db, session_id, reason=reason))
        log.info("analysis of session %s %s", session_id, reason)
        return None

    async def metered(attempt: int, served: llm.LLM[Any], prompt: int, completion: int) -> None:
        if meter is not None:  # billed to the provider that answered (with fallbacks, maybe not the primary)
            await meter.record_llm_call(
                key=f"analysis/{attempt}",
                provider=served.provider,
                model=served.model,
                input_tokens=prompt,
                output_tokens=completion,
            )

    result, error, attempts = await analyse(model, items, metered)
    await store.write(
        lambda db: repo.store_analysis(
            db, session_id, result=result.model_dump() if result else None, error=error, attempts=attempts
        )
    )
    log.info("analysis of session %s: %s", session_id, "stored" if result else f"failed ({error})")
    return result
