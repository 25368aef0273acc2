"""Section 1c (`--only llm`): what the Gemini client costs before the first token, against the conversation's length.

The product's LLM (`pipelines.providers.google.llm`: LiveKit's google plugin on google-genai) and a plain aiohttp
request of the same conversation, side by side against the Gemini fake (its own process, first token at once), at
0, 20 and 40 earlier turns. The product sends the whole conversation every turn, as every agent must; the voice
section's floor sends only the last message, so this is the share of section 1's LLM hop that grows with the call.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from .common import Results, median

KEY = "bench-key"
MODEL = "gemini-2.5-flash"
PRIOR_TURNS = (0, 20, 40)
SYSTEM = "You are the receptionist of a dental clinic. Answer briefly. " * 4


def _conversation(turns: int) -> list[tuple[str, str]]:
    return (
        [("system", SYSTEM)] + [("user", "Hello there."), ("assistant", "Okay.")] * turns + [("user", "Hello there.")]
    )


async def run(results: Results, *, quick: bool = False) -> None:
    from livekit.agents import llm as llm_base

    from pipelines.config import AgentSpec, ProviderCredentials, ProvidersConfig
    from pipelines.providers import google as google_provider

    root = Path(__file__).resolve().parent.parent
    fakes = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes", "--port", "0", "--api-key", KEY], cwd=root, stdout=subprocess.PIPE
    )
    try:
        assert fakes.stdout is not None
        base = json.loads(fakes.stdout.readline())["urls"]["gemini_base_url"]
        google_provider.prewarm()  # as a job process has it
        spec = AgentSpec(
            id="a",
            name="a",
            system_prompt="",
            stt_provider="deepgram",
            llm_provider="gemini",
            tts_provider="elevenlabs",
        )
        product_llm = google_provider.llm(spec, ProvidersConfig(google=ProviderCredentials(KEY, base)))
        url = f"{base}/v1/models/{MODEL}:streamGenerateContent?alt=sse"

        async def through_product(conversation: list[tuple[str, str]]) -> float:
            ctx = llm_base.ChatContext()
            for role, text in conversation:
                ctx.add_message(role=role, content=text)  # type: ignore[arg-type]
            started, first = time.perf_counter(), None
            async with product_llm.chat(chat_ctx=ctx) as stream:
                async for chunk in stream:
                    if first is None and chunk.delta and chunk.delta.content:
                        first = time.perf_counter() - started
            assert first is not None, "the fake's reply had no text"
            return first

        async def through_aiohttp(http: aiohttp.ClientSession, conversation: list[tuple[str, str]]) -> float:
            body: dict[str, Any] = {
                "systemInstruction": {"parts": [{"text": conversation[0][1]}]},
                "contents": [
                    {"role": "model" if role == "assistant" else "user", "parts": [{"text": text}]}
                    for role, text in conversation[1:]
                ],
            }
            started, first = time.perf_counter(), None
            async with http.post(url, json=body, headers={"x-goog-api-key": KEY}) as response:
                async for line in response.content:
                    if first is None and line.startswith(b"data:"):
                        first = time.perf_counter() - started
            assert first is not None, "the fake sent no event"
            return first

        rounds = 5 if quick else 30
        by: dict[tuple[str, int], list[float]] = {}
        async with aiohttp.ClientSession() as http:
            for turns in PRIOR_TURNS:
                conversation = _conversation(turns)
                await through_product(conversation)  # a warm connection each way
                await through_aiohttp(http, conversation)
                for _ in range(rounds):  # alternating, so both see the same machine
                    by.setdefault(("product", turns), []).append(await through_product(conversation))
                    by.setdefault(("aiohttp", turns), []).append(await through_aiohttp(http, conversation))
        await product_llm.aclose()
    finally:
        fakes.terminate()
        fakes.wait(10)

    section = "1c LLM client"
    results.add(
        section,
        "setup",
        f"the Gemini fake in its own process (first token at once); {rounds} requests each way per length, alternating;"
        " the product's LLM (LiveKit's google plugin on google-genai) beside plain aiohttp with the same conversation",
    )
    for turns in PRIOR_TURNS:
        mine, plain = median(by[("product", turns)]) * 1000, median(by[("aiohttp", turns)]) * 1000
        results.add(
            section,
            f"{turns} earlier turns: first token p50, product's client / plain aiohttp / difference",
            f"{mine:.1f} / {plain:.1f} / {mine - plain:.1f} ms",
        )
    grows = (median(by[("product", PRIOR_TURNS[-1])]) - median(by[("product", 0)])) * 1000 / PRIOR_TURNS[-1]
    results.add(section, "the product's client, per earlier turn", f"{grows:.2f} ms")
