"""An agent's ``tools`` (core/tools.py): HTTP tools and the call tools, on ``/api/agents`` in camelCase
(``timeoutMs``) and on ``/api/v1/agents`` in snake_case (``timeout_ms``); bodies take either. Header values are
write-only: every response masks them, and a masked value sent back keeps the stored one."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import AfterValidator, AliasChoices, Field

from core.tools import CALL_TOOLS, DEFAULT_TIMEOUT_MS, MAX_TOOLS

from .common import E164_PATTERN, HttpUrlText, RequestBody

NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$"
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
# Set by the product on every tool request: a tool cannot replace them.
_RESERVED_HEADERS = {"content-type", "content-length", "host", "x-voxarena-signature", "x-voxarena-session-id"}
MAX_HEADERS = 20
MAX_SCHEMA_CHARS = 16_384


def _schema(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value)) > MAX_SCHEMA_CHARS:
        raise ValueError(f"the parameters schema is limited to {MAX_SCHEMA_CHARS} characters of JSON")
    if value.get("type") != "object":
        raise ValueError('parameters must be a JSON Schema of type "object"')
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as e:
        raise ValueError(f"parameters is not a valid JSON Schema: {e.message}") from None
    return value


def _headers(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} headers")
    for name, v in value.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid header name")
        if name.lower() in _RESERVED_HEADERS or name.lower().startswith("x-voxarena-"):
            raise ValueError(f"header {name} is set by the product")
        if len(v) > 4_096 or "\n" in v or "\r" in v:
            raise ValueError(f"header {name}: a value is one line of at most 4096 characters")
    return value


class HttpToolIn(RequestBody):
    type: Literal["http"]
    name: str = Field(pattern=NAME_PATTERN, description="What the LLM calls it: letters, digits, _ (64 at most).")
    description: str = Field(default="", max_length=2_000, description="When to use it, for the LLM.")
    parameters: Annotated[dict[str, Any], AfterValidator(_schema)] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description='The arguments, as a JSON Schema of type "object".',
    )
    url: HttpUrlText = Field(description="http(s); a public address (docs/outbound-http.md).")
    method: Literal["POST", "GET"] = "POST"
    headers: Annotated[dict[str, str] | None, AfterValidator(_headers)] = Field(
        default=None, description="Sent with each request; write-only (masked in responses)."
    )
    timeoutMs: int = Field(
        default=DEFAULT_TIMEOUT_MS, ge=100, le=30_000, validation_alias=AliasChoices("timeoutMs", "timeout_ms")
    )
    filler: str | None = Field(
        default=None, min_length=1, max_length=200, description="Said on a voice call when the tool takes over 1 s."
    )


class EndCallToolIn(RequestBody):
    type: Literal["end_call"]
    description: str | None = Field(default=None, max_length=2_000, description="Added to the tool's own.")


class TransferCallToolIn(RequestBody):
    type: Literal["transfer_call"]
    target: str = Field(pattern=rf"{E164_PATTERN}|^sips?:[^\s]{{3,250}}$", description="An E.164 number or a sip: URI.")
    mode: Literal["cold", "warm"] | None = Field(
        default=None,
        description="cold (unset): a SIP REFER hands the caller on. warm: the caller waits on hold while the agent "
        "calls the target, briefs them and connects the two when they accept (docs/tools.md).",
    )
    description: str | None = Field(default=None, max_length=2_000)


class SendDtmfToolIn(RequestBody):
    type: Literal["send_dtmf"]
    description: str | None = Field(default=None, max_length=2_000)


ToolIn = Annotated[HttpToolIn | EndCallToolIn | TransferCallToolIn | SendDtmfToolIn, Field(discriminator="type")]


def _unique(tools: list[Any]) -> list[Any]:
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        name = tool.name if isinstance(tool, HttpToolIn) else tool.type
        if isinstance(tool, HttpToolIn) and name in CALL_TOOLS:
            raise ValueError(f"tools[{i}]: the name {name} belongs to a call tool")
        if name in seen:
            raise ValueError(f"tools[{i}]: the name {name} is used twice")
        seen.add(name)
    return tools


Tools = Annotated[list[ToolIn], Field(max_length=MAX_TOOLS), AfterValidator(_unique)]


def tools_wire(stored: list[dict[str, Any]] | None, *, snake: bool = False) -> list[dict[str, Any]]:
    """The agent's tools as a response shows them: header values masked."""
    out = []
    for tool in stored or ():
        shown = dict(tool)
        if "headers" in shown:
            shown["headers"] = {k: v.get("masked", "****") for k, v in (shown["headers"] or {}).items()}
        if snake and "timeoutMs" in shown:
            shown["timeout_ms"] = shown.pop("timeoutMs")
        out.append(shown)
    return out


def http_urls(tools: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(i, t["url"]) for i, t in enumerate(tools) if t.get("type") == "http"]
