"""Fake OpenAI chat completions (what the `livekit-plugins-openai` LLM calls; reach it with
`base_url=http://127.0.0.1:P/openai/v1`).

  POST /openai/v1/chat/completions
       stream=true  -> SSE `data: {"object":"chat.completion.chunk","choices":[{"delta":{...}}]}` ... `data: [DONE]`,
                       with a last chunk carrying `usage` (and no choices) when `stream_options.include_usage` is set
       stream=false -> one `chat.completion` object
  GET  /openai/v1/models -> a model list

Structured output (`response_format` json_object / json_schema) is answered from `llm_json_replies`, like Gemini's.
Token accounting is Gemini's: prompt tokens = whitespace-separated words of every message's text content
(tool declarations not counted); completion tokens = words of the reply.
Auth: `Authorization: Bearer <key>`; a wrong or missing key gets 401 `invalid_api_key`, as OpenAI answers.
Failures: "reject" answers 500 `server_error`; "hang" never answers; "drop" sends one chunk and closes the connection.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiohttp import web

from .common import count_llm_completion, hang, json_response, state_of
from .state import OPENAI, FakeState, LlmReply


def _error(status: int, code: str, message: str, kind: str) -> web.Response:
    return json_response(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})


def _auth_error(request: web.Request, state: FakeState) -> web.Response | None:
    header = request.headers.get("Authorization", "")
    key = header[len("Bearer ") :] if header.startswith("Bearer ") else None
    if state.key_ok(key):
        return None
    state.add(OPENAI, "auth_failures")
    return _error(401, "invalid_api_key", "Incorrect API key provided.", "invalid_request_error")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def prompt_tokens(body: dict[str, Any]) -> int:
    words = 0
    for message in body.get("messages") or []:
        words += len(_text_of(message.get("content")).split())
        for call in message.get("tool_calls") or []:
            fn = call.get("function") or {}
            words += len(str(fn.get("name", "")).split()) + len(str(fn.get("arguments", "")).split())
    return words


def _reply_text(reply: LlmReply) -> tuple[str, dict[str, Any] | None]:
    if isinstance(reply, dict) and "function_call" in reply:
        call = reply["function_call"]
        return "", {"name": call["name"], "arguments": json.dumps(call.get("args", {}))}
    if isinstance(reply, dict):
        return (reply["text"] if "text" in reply else json.dumps(reply["json"])), None
    return reply, None


async def handle_models(request: web.Request) -> web.Response:
    state = state_of(request)
    if (err := _auth_error(request, state)) is not None:
        return err
    state.add(OPENAI, "model_list_requests")
    return json_response(
        200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "fake"}]}
    )


async def handle_chat_completions(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    if (err := _auth_error(request, state)) is not None:
        return err
    body = await request.json()
    state.add(OPENAI, "requests")
    failure = state.take_failure(OPENAI)
    if failure == "reject":
        return _error(500, "server_error", "The server had an error while processing your request.", "server_error")
    if failure == "hang":
        await hang(request)
        return _error(503, "unavailable", "fake shutting down", "server_error")

    fmt = (body.get("response_format") or {}).get("type")
    json_mode = fmt in ("json_object", "json_schema")
    state.add(OPENAI, "json_requests", int(json_mode))
    script = state.script
    reply = state.next_llm_reply(json_mode=json_mode)
    text, tool_call = _reply_text(reply)
    completion = (
        len(text.split())
        if tool_call is None
        else (len(tool_call["name"].split()) + len(tool_call["arguments"].split()))
    )
    usage = {"prompt_tokens": prompt_tokens(body), "completion_tokens": completion}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    model = body.get("model", "gpt-4o-mini")
    state.record(OPENAI, {"model": model, "json_mode": json_mode, "request": body, "reply": reply})
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    if script.llm_first_token_delay_ms:
        await asyncio.sleep(script.llm_first_token_delay_ms / 1000)

    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if tool_call is not None:
        message["tool_calls"] = [{"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function", "function": tool_call}]
    if not body.get("stream"):
        if failure == "drop":
            return _error(503, "unavailable", "fake: connection reset", "server_error")
        _count_completed(state, usage)
        return json_response(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool_call else "stop"}],
                "usage": usage,
            },
        )

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        data = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(data)}\n\n".encode()

    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    if tool_call is not None:
        deltas = [{"role": "assistant", "tool_calls": [{"index": 0, **message["tool_calls"][0]}]}]
    else:
        n = max(1, min(script.llm_chunks, len(text)))
        deltas = [
            {"role": "assistant", "content": text[i * len(text) // n : (i + 1) * len(text) // n]} for i in range(n)
        ]
    for i, delta in enumerate(deltas):
        await resp.write(chunk(delta, None))
        if failure == "drop":
            if request.transport is not None:
                request.transport.close()
            return resp
        if i < len(deltas) - 1 and script.llm_chunk_delay_ms:
            await asyncio.sleep(script.llm_chunk_delay_ms / 1000)
    await resp.write(chunk({}, "tool_calls" if tool_call else "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        data = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        }
        await resp.write(f"data: {json.dumps(data)}\n\n".encode())
    await resp.write(b"data: [DONE]\n\n")
    _count_completed(state, usage)
    await resp.write_eof()
    return resp


def _count_completed(state: FakeState, usage: dict[str, int]) -> None:
    count_llm_completion(state, OPENAI, usage["prompt_tokens"], usage["completion_tokens"])
