"""Shared wire-model pieces: the error body, provider enums, strict request base."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

SttProvider = Literal["deepgram", "assemblyai", "elevenlabs"]
LlmProvider = Literal["gemini", "openai"]
TtsProvider = Literal["elevenlabs", "resemble", "google"]
FirstMessageMode = Literal["assistant_speaks_first", "assistant_waits"]

E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"  # a phone number, e.g. +15551234567

STT_PROVIDERS: tuple[str, ...] = SttProvider.__args__  # type: ignore[attr-defined]
LLM_PROVIDERS: tuple[str, ...] = LlmProvider.__args__  # type: ignore[attr-defined]
TTS_PROVIDERS: tuple[str, ...] = TtsProvider.__args__  # type: ignore[attr-defined]


class RequestBody(BaseModel):
    """Bodies are validated strictly (a string is never silently a number); unknown fields are ignored so a client
    that sends back what it read (id, createdAt, ...) is not refused."""

    model_config = ConfigDict(strict=True, extra="ignore")


class Query(BaseModel):
    """Query strings arrive as text, so they are parsed leniently, then range-checked."""

    model_config = ConfigDict(extra="ignore")


class ErrorBody(BaseModel):
    detail: str
    status_code: int
    type: str
    errors: list[dict] | None = Field(default=None, description="Per-field problems, when validation failed.")


class Success(BaseModel):
    success: bool


class Deleted(Success):
    message: str = "deleted"


CAMPAIGN = Field(
    default=None,
    min_length=1,
    max_length=200,
    description="The campaign the call belongs to (default: its agent's campaign), for cost per outcome.",
)

MAX_VARIABLES = 100
VariableName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
# A call's dynamic variables (core/variables.py): filled into the agent's {{placeholders}}, kept in its context.
Variables = Annotated[
    dict[VariableName, Annotated[str, StringConstraints(max_length=500)] | int | float | bool],
    Field(max_length=MAX_VARIABLES, description="Fill the agent's {{placeholders}}; kept in the call's context."),
]


def merge_variables(context: dict[str, Any] | None, variables: dict[str, Any] | None) -> dict[str, Any] | None:
    """A call's context with its variables over it (both end up in the context the job fills placeholders from)."""
    if not variables:
        return context
    return {**(context or {}), **variables}


def _http_url(url: str) -> str:
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError("must be an http or https URL")
    return url


# A URL the product will call on the tenant's behalf (a tool, a webhook); where it may point is the outbound address
# policy's to say, when it is saved and at each use (docs/outbound-http.md).
HttpUrlText = Annotated[str, Field(min_length=8, max_length=2_048), AfterValidator(_http_url)]
