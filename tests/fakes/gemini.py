"""Fake Gemini API (the REST surface google-genai 3.x calls; reach it with
`GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:P`).

  GET  /{v1,v1beta}/models?pageSize=N          -> model list (the plugin's prewarm)
  POST /{v1,v1beta}/models/{model}:streamGenerateContent?alt=sse
       -> SSE `data: {candidates[{content{role, parts}, finishReason?}], usageMetadata?}`
  POST /{v1,v1beta}/models/{model}:generateContent -> one JSON response (non-streaming callers)
  POST /{v1,v1beta}/models/{model}:countTokens     -> {"totalTokens": <prompt tokens>}

Structured output: a request whose generationConfig has responseMimeType application/json,
responseSchema or responseJsonSchema is answered from `llm_json_replies` instead of
`llm_replies`.

Function calling: a request declaring tools gets the next `llm_tool_calls` item as a functionCall
part; one whose last turn holds functionResponse parts gets text (the next `llm_replies` item, else
a sentence quoting the responses).

Answering-machine detection: a request declaring LiveKit AMD's `save_prediction` is a greeting to
classify; it gets `save_prediction(label)` from `greeting_label`, a keyword stand-in for the LLM
(the fake's own rule, so a test knows the verdict a greeting gets; it judges nothing).

Token accounting (deterministic, and exactly what the counters record):
  prompt tokens     = whitespace-separated words in every text part of `contents` and
                      `systemInstruction`, plus words of name + JSON args for functionCall /
                      functionResponse parts (tool declarations are not counted);
  completion tokens = words of the reply text (name + JSON args for a function call).
usageMetadata is sent once, on the last chunk, with these numbers.
Auth: `x-goog-api-key` header or `?key=`; a wrong key gets 400 API_KEY_INVALID and a missing one
403 PERMISSION_DENIED, as Google answers.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

from aiohttp import web

from .common import count_llm_completion, hang, json_response, state_of
from .state import GEMINI, FakeState, LlmReply

_MODEL_INFO = {
    "version": "fake",
    "displayName": "Fake Gemini",
    "inputTokenLimit": 1048576,
    "outputTokenLimit": 65536,
    "supportedGenerationMethods": ["generateContent", "countTokens"],
}


def _error(code: int, status: str, message: str, reason: str | None = None) -> web.Response:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason:
        err["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
            }
        ]
    return json_response(code, {"error": err})


def _auth_error(request: web.Request, state: FakeState) -> web.Response | None:
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if state.key_ok(key):
        return None
    state.add(GEMINI, "auth_failures")
    if key is None:
        return _error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.")
    return _error(
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        "API_KEY_INVALID",
    )


def words_in_part(part: dict[str, Any]) -> int:
    if "text" in part:
        return len(str(part["text"]).split())
    for key, payload in (("functionCall", "args"), ("functionResponse", "response")):
        if key in part:
            call = part[key]
            return len(str(call.get("name", "")).split()) + len(json.dumps(call.get(payload, {})).split())
    return 0


def prompt_tokens(body: dict[str, Any]) -> int:
    contents = list(body.get("contents") or [])
    if body.get("systemInstruction"):
        contents.append(body["systemInstruction"])
    return sum(words_in_part(p) for c in contents for p in (c.get("parts") or []))


def _wants_json(config: dict[str, Any]) -> bool:
    return (
        config.get("responseMimeType") == "application/json"
        or "responseSchema" in config
        or "responseJsonSchema" in config
    )


def _reply_parts(reply: LlmReply, chunks: int) -> list[dict[str, Any]]:
    """The reply as a list of parts, one per streamed chunk."""
    if isinstance(reply, dict) and "function_call" in reply:
        call = reply["function_call"]
        return [{"functionCall": {"name": call["name"], "args": call.get("args", {})}}]
    text = (reply["text"] if "text" in reply else json.dumps(reply["json"])) if isinstance(reply, dict) else reply
    n = max(1, min(chunks, len(text)))
    return [{"text": text[i * len(text) // n : (i + 1) * len(text) // n]} for i in range(n)]


def declared_functions(body: dict[str, Any]) -> set[str]:
    """The function names a request declares (`tools[].functionDeclarations[].name`)."""
    return {fn.get("name", "") for tool in body.get("tools") or [] for fn in tool.get("functionDeclarations") or []}


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the request's last user turn."""
    for content in reversed(body.get("contents") or []):
        if content.get("role") == "user":
            return " ".join(p["text"] for p in content.get("parts") or [] if "text" in p)
    return ""


def _function_responses(body: dict[str, Any]) -> list[dict[str, Any]]:
    contents = body.get("contents") or []
    last = contents[-1] if contents else {}
    return [p["functionResponse"] for p in last.get("parts") or [] if "functionResponse" in p]


_UNAVAILABLE = re.compile(r"\b(mailbox is full|not been set up|hasn't been set up|cannot accept messages)\b")
_IVR = re.compile(r"\bpress (\d|one|two|three|star|pound)\b")
_VOICEMAIL = re.compile(r"\b(leave (me )?a message|after the (tone|beep)|voicemail|not available)\b")


def greeting_label(transcript: str) -> str:
    """What the fake says a call greeting is (LiveKit AMD's categories)."""
    text = transcript.lower()
    if _UNAVAILABLE.search(text):
        return "machine-unavailable"
    if _IVR.search(text):
        return "machine-ivr"
    if _VOICEMAIL.search(text):
        return "machine-vm"
    return "human"


def _tool_turn(state: FakeState, body: dict[str, Any], declared: set[str]) -> LlmReply | web.Response:
    """A request with tools: the next scripted function call, or (after function responses) a text answer."""
    script = state.script
    if "save_prediction" in declared:  # LiveKit AMD classifying a greeting
        state.add(GEMINI, "amd_requests")
        return {"function_call": {"name": "save_prediction", "args": {"label": greeting_label(last_user_text(body))}}}
    responses = _function_responses(body)
    if responses:
        if script.llm_replies:
            return script.llm_replies.pop(0)
        quoted = "; ".join(
            f"{r.get('name')} returned {json.dumps(r.get('response', {}), sort_keys=True)}" for r in responses
        )
        return {"text": f"Based on the figures: {quoted}"}
    if script.llm_tool_calls:
        call = script.llm_tool_calls.pop(0)
        if call["name"] not in declared:
            return _error(400, "INVALID_ARGUMENT", f"fake: scripted call {call['name']!r} is not declared")
        state.add(GEMINI, "function_calls")
        return {"function_call": {"name": call["name"], "args": call.get("args", {})}}
    return state.next_llm_reply(json_mode=False)


async def handle_models(request: web.Request) -> web.Response:
    state = state_of(request)
    if (err := _auth_error(request, state)) is not None:
        return err
    state.add(GEMINI, "model_list_requests")
    return json_response(200, {"models": [{"name": "models/gemini-fake", **_MODEL_INFO}]})


async def handle_model_action(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    model, _, action = request.match_info["tail"].partition(":")
    if (err := _auth_error(request, state)) is not None:
        return err
    if not action:
        return json_response(200, {"name": f"models/{model}", **_MODEL_INFO})
    if action not in ("streamGenerateContent", "generateContent", "countTokens"):
        return _error(404, "NOT_FOUND", f"fake: unsupported method {action}")

    body = await request.json()
    if action == "countTokens":
        return json_response(200, {"totalTokens": prompt_tokens(body)})
    state.add(GEMINI, "requests")
    failure = state.take_failure(GEMINI)
    if failure == "reject":
        return _error(500, "INTERNAL", "Internal error encountered.")
    if failure == "hang":
        await hang(request)
        return _error(503, "UNAVAILABLE", "fake shutting down")

    json_mode = _wants_json(body.get("generationConfig") or {})
    state.add(GEMINI, "json_requests", int(json_mode))
    script = state.script
    declared = declared_functions(body)
    if declared and not json_mode:
        state.add(GEMINI, "tool_requests")
        reply = _tool_turn(state, body, declared)
        if isinstance(reply, web.Response):
            return reply
    elif script.llm_echo and not json_mode:
        reply = {"text": f"You said: {last_user_text(body)}"}
    else:
        reply = state.next_llm_reply(json_mode=json_mode)
    parts = _reply_parts(reply, script.llm_chunks)
    # Count the whole reply, not the chunks: a chunk boundary may split a word in two.
    whole = parts if "functionCall" in parts[0] else [{"text": "".join(p["text"] for p in parts)}]
    usage = {
        "promptTokenCount": prompt_tokens(body),
        "candidatesTokenCount": words_in_part(whole[0]),
    }
    usage["totalTokenCount"] = usage["promptTokenCount"] + usage["candidatesTokenCount"]
    state.record(
        GEMINI,
        {"model": model, "action": action, "json_mode": json_mode, "request": body, "reply": reply},
    )
    response_id = uuid.uuid4().hex

    def chunk(part_list: list[dict[str, Any]], last: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": part_list}, "index": 0}
        out: dict[str, Any] = {
            "candidates": [candidate],
            "modelVersion": model,
            "responseId": response_id,
        }
        if last:
            candidate["finishReason"] = "STOP"
            out["usageMetadata"] = usage
        return out

    if script.llm_first_token_delay_ms:
        await asyncio.sleep(script.llm_first_token_delay_ms / 1000)

    if action == "generateContent":
        if failure == "drop":
            return _error(503, "UNAVAILABLE", "fake: connection reset")
        _count_completed(state, usage)
        return json_response(200, chunk(whole, True))

    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        await resp.write(f"data: {json.dumps(chunk([part], last))}\r\n\r\n".encode())
        if failure == "drop":
            # One chunk, then the connection dies: a provider falling over mid-answer.
            if request.transport is not None:
                request.transport.close()
            return resp
        if not last and script.llm_chunk_delay_ms:
            await asyncio.sleep(script.llm_chunk_delay_ms / 1000)
    _count_completed(state, usage)
    await resp.write_eof()
    return resp


def _count_completed(state: FakeState, usage: dict[str, int]) -> None:
    count_llm_completion(state, GEMINI, usage["promptTokenCount"], usage["candidatesTokenCount"])
