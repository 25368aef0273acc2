"""An agent's tools: what the LLM may call mid-conversation, on every channel (voice calls, text chat,
ConversationRelay). Two kinds:

- **HTTP tools**: the business's own API. The LLM's function call becomes one HTTP request (POST: the arguments as a
  JSON body; GET: as the query string), signed with the tenant's signing secret (core/signing.py) and sent through
  the outbound address policy (core/netpolicy.py: the resolved address is checked on every request and every
  redirect). Its answer, capped at `MAX_RESULT_BYTES`, goes back to the LLM; a timeout, a non-2xx answer or a
  refused address becomes a short error the LLM can speak about. A call never hangs on a tool: each has its
  deadline (``timeoutMs``).
- **Call tools** (``end_call``, ``transfer_call``, ``send_dtmf``): act on the call itself; the job runs them
  (worker/tools.py).

Every tool call is recorded on the session (``tool_calls``, with ``tool.called`` and ``tool.result`` on the live
stream) by `ToolRunner.tracked`, whichever kind it is."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlencode, urljoin, urlsplit

import aiohttp
import yarl

from core.netpolicy import AddressRefused, NetPolicy
from core.secrets import SecretBox
from core.signing import SIGNATURE_HEADER, sign
from core.store import calls as calls_repo
from core.store import tool_calls as repo
from core.store.db import Store

log = logging.getLogger("voxarena.tools")

MAX_TOOLS = 20
MAX_RESULT_BYTES = 16 * 1024  # of a tool's answer, given to the LLM
MAX_REDIRECTS = 3
DEFAULT_TIMEOUT_MS = 5_000
# A voice call's filler ("One moment.") is said when a tool has run this long and the agent is silent.
FILLER_DELAY_SECONDS = 1.0
CALL_TOOLS = ("end_call", "transfer_call", "send_dtmf")
_REDIRECTS = (301, 302, 303, 307, 308)

Outcome = Literal["ok", "error", "timeout", "refused"]


@dataclass(frozen=True)
class HttpTool:
    name: str
    description: str
    parameters: dict[str, Any]
    url: str
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)  # name -> the value sealed (core/secrets.py)
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    filler: str | None = None

    kind = "http"


@dataclass(frozen=True)
class CallTool:
    kind: str  # one of CALL_TOOLS; also its name
    description: str | None = None
    target: str | None = None  # transfer_call's number or SIP URI
    mode: str = "cold"  # transfer_call's: cold (a SIP REFER) or warm (the human briefed first)

    @property
    def name(self) -> str:
        return self.kind


Tool = HttpTool | CallTool


def agent_tools(config: dict[str, Any]) -> list[Tool]:
    """The tools of a stored agent (its ``config.tools``, as the API validated them)."""
    out: list[Tool] = []
    for item in config.get("tools") or ():
        kind = item.get("type")
        if kind == "http":
            out.append(
                HttpTool(
                    name=item["name"],
                    description=item.get("description") or "",
                    parameters=item.get("parameters") or {"type": "object", "properties": {}},
                    url=item["url"],
                    method=item.get("method") or "POST",
                    headers={k: v["sealed"] for k, v in (item.get("headers") or {}).items()},
                    timeout_ms=int(item.get("timeoutMs") or DEFAULT_TIMEOUT_MS),
                    filler=item.get("filler"),
                )
            )
        elif kind in CALL_TOOLS:
            out.append(
                CallTool(
                    kind=kind,
                    description=item.get("description"),
                    target=item.get("target"),
                    mode=item.get("mode") or "cold",
                )
            )
        else:  # validated on the way in: a kind this version does not know was stored by a newer one
            log.warning("agent tool of unknown type %r skipped", kind)
    return out


_CALL_TOOL_SCHEMAS: dict[str, tuple[str, dict[str, Any]]] = {
    "end_call": (
        "End the call. Call it when the caller is done or asks to hang up, after a short goodbye. Do not call it "
        "when you are unsure, or when the caller asks to wait or to be transferred.",
        {"type": "object", "properties": {}},
    ),
    "transfer_call": (
        "Transfer the caller to a human colleague. Call it when the caller asks for a person, or when you cannot "
        "help; tell the caller first that you are transferring them.",
        {
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "Why the caller is transferred, briefly."}},
        },
    ),
    "send_dtmf": (
        "Press keys on the phone keypad (DTMF tones), to navigate an automated phone menu.",
        {
            "type": "object",
            "properties": {"digits": {"type": "string", "description": "The keys to press, in order: 0-9, * and #."}},
            "required": ["digits"],
        },
    ),
}


WARM_TRANSFER_DESCRIPTION = (
    "Transfer the caller to a human colleague, warmly: the caller waits on hold while you call the colleague and "
    "tell them what the call is about; they are connected if the colleague accepts. Call it when the caller asks "
    "for a person, or when you cannot help; tell the caller first that you will put them on hold briefly. If the "
    "colleague declines or does not answer, the caller is back with you: say so and go on helping."
)


def declaration(tool: Tool) -> dict[str, Any]:
    """The function the LLM sees: name, description, JSON Schema of its arguments (LiveKit's raw schema)."""
    if isinstance(tool, HttpTool):
        return {"name": tool.name, "description": tool.description, "parameters": tool.parameters}
    description, parameters = _CALL_TOOL_SCHEMAS[tool.kind]
    if tool.kind == "transfer_call" and tool.mode == "warm":
        description = WARM_TRANSFER_DESCRIPTION
    if tool.description:
        description = f"{description} {tool.description}"
    return {"name": tool.name, "description": description, "parameters": parameters}


@dataclass(frozen=True)
class ToolResult:
    status: Outcome
    text: str  # what the LLM is given
    http_status: int | None = None


def _query(arguments: dict[str, Any]) -> str:
    """GET arguments as a query string: scalars as text (booleans as true/false), lists and objects as JSON."""

    def text(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, dict | list):
            return json.dumps(v, separators=(",", ":"), ensure_ascii=False)
        return "" if v is None else str(v)

    return urlencode([(k, text(v)) for k, v in arguments.items()], quote_via=quote)


def _with_query(url: str, query: str) -> str:
    if not query:
        return url
    return f"{url}{'&' if urlsplit(url).query else '?'}{query}"


def _refusal(e: BaseException) -> AddressRefused | None:
    if isinstance(e, AddressRefused):
        return e
    refused = getattr(e, "os_error", None)
    return refused if isinstance(refused, AddressRefused) else None


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


class ToolRunner:
    """Runs the tools of one session and records each call. `http` is the outbound policy's session (made on first
    use, closed by `aclose`); the tenant's signing secret is read once."""

    def __init__(self, store: Store, policy: NetPolicy, box: SecretBox, *, owner_id: str, session_id: str) -> None:
        self.store = store
        self.policy = policy
        self.box = box
        self.owner_id = owner_id
        self.session_id = session_id
        self._http: aiohttp.ClientSession | None = None
        self._secret: str | None = None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def tracked(
        self, tool: Tool, arguments: dict[str, Any], call_key: str, run: Callable[[], Awaitable[ToolResult]]
    ) -> ToolResult:
        """Records the call, runs it, records its outcome; a failure of the tool itself is an `error` result."""
        sid = self.session_id

        def start(key: str) -> Callable[[Any], bool]:
            return lambda db: repo.started(
                db, session_id=sid, call_key=key, name=tool.name, kind=tool.kind, arguments=arguments
            )

        if not await self.store.write(start(call_key)):  # an LLM that reuses its call ids: each call is kept
            call_key = f"{call_key}~{uuid.uuid4().hex[:8]}"
            await self.store.write(start(call_key))
        started = time.monotonic()
        try:
            result = await run()
        except Exception as e:
            log.exception("session %s: tool %s failed", sid, tool.name)
            result = ToolResult("error", f"error: the tool {tool.name} failed ({type(e).__name__})")
        latency_ms = round((time.monotonic() - started) * 1000)
        (log.info if result.status == "ok" else log.warning)(
            "session %s: tool %s %s in %d ms%s",
            sid,
            tool.name,
            result.status,
            latency_ms,
            f" ({result.text})" if result.status != "ok" else "",
        )
        try:
            await self.store.write(
                lambda db: repo.finished(
                    db,
                    session_id=sid,
                    call_key=call_key,
                    status=result.status,
                    result=result.text,
                    latency_ms=latency_ms,
                    http_status=result.http_status,
                )
            )
        except Exception:  # the LLM still gets the answer; the record says `running`
            log.exception("session %s: the result of tool %s could not be recorded", sid, tool.name)
        return result

    async def call_http(self, tool: HttpTool, arguments: dict[str, Any], call_key: str) -> ToolResult:
        return await self.tracked(tool, arguments, call_key, lambda: self._request(tool, arguments, call_key))

    async def _signing_secret(self) -> str:
        if self._secret is None:
            self._secret = await self.store.write(calls_repo.callback_secret, self.box, self.owner_id)
        return self._secret

    async def _request(self, tool: HttpTool, arguments: dict[str, Any], call_key: str) -> ToolResult:
        seconds = tool.timeout_ms / 1000
        try:
            async with asyncio.timeout(seconds):
                return await self._send(tool, arguments, call_key)
        except TimeoutError:
            return ToolResult("timeout", f"error: {tool.name} did not answer within {seconds:g} s")
        except (aiohttp.ClientError, AddressRefused, OSError) as e:
            refused = _refusal(e)
            if refused is not None:
                return ToolResult("refused", f"error: {tool.name}'s address is not allowed ({refused})")
            return ToolResult("error", f"error: {tool.name} could not be reached ({e or type(e).__name__})")

    async def _send(self, tool: HttpTool, arguments: dict[str, Any], call_key: str) -> ToolResult:
        if self._http is None:
            self._http = self.policy.session()
        secret = await self._signing_secret()
        own = {name: self.box.open(sealed) for name, sealed in tool.headers.items()}
        if tool.method == "GET":
            # signed: the whole query string exactly as sent (percent-encoded; the tool's own parameters too)
            url, body = _with_query(tool.url, _query(arguments)), None
            signed = urlsplit(url).query.encode()
        else:
            url = tool.url
            body = signed = json.dumps(arguments, ensure_ascii=False).encode()
        method, origin = tool.method, _origin(tool.url)
        for _ in range(MAX_REDIRECTS + 1):
            await self.policy.check_url(url, resolve=False)  # a literal address; a name is checked as it resolves
            headers = {
                SIGNATURE_HEADER: sign(secret, signed, int(time.time())),
                "X-Voxarena-Session-Id": self.session_id,
                "X-Voxarena-Tool-Call-Id": call_key,
                # the business's own headers (its credentials) go to its own origin only, never across a redirect
                **(own if _origin(url) == origin else {}),
            }
            if body is not None:
                headers["Content-Type"] = "application/json"
            sent = yarl.URL(url, encoded=True)  # as signed: not re-quoted on the way out
            async with self._http.request(method, sent, data=body, headers=headers, allow_redirects=False) as resp:
                location = resp.headers.get("Location")
                if resp.status in _REDIRECTS and location:
                    url = urljoin(url, location)
                    if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                        method, body = "GET", None
                    if body is None:
                        signed = urlsplit(url).query.encode()
                    continue
                raw = await resp.content.read(MAX_RESULT_BYTES + 1)
                text = raw[:MAX_RESULT_BYTES].decode("utf-8", errors="replace")
                if len(raw) > MAX_RESULT_BYTES:
                    text += " …(truncated)"
                if 200 <= resp.status < 300:
                    return ToolResult("ok", text or "(no content)", resp.status)
                return ToolResult(
                    "error", f"error: {tool.name} answered HTTP {resp.status}: {text[:500]}".rstrip(": "), resp.status
                )
        return ToolResult("error", f"error: {tool.name} redirected more than {MAX_REDIRECTS} times")
