"""Agent wire models. 001: Agent { id, name, systemPrompt, sttProvider, llmProvider, ttsProvider, createdAt,
updatedAt } (camelCase, canonical), with Autonomite's (002) and Phony's (003) fields added in camelCase: slug,
description, enabled, clientId, voiceSettings, type, status, contextData, phoneNumber, totalCalls, totalMinutes.
``/api/agents`` bodies also accept 003's snake_case names (``system_prompt``, ``context_data``, ``voice``, ...).
``/api/v1/agents`` serves 002's snake_case shape."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, Field, model_validator

from core.store.agents import CONFIG_KEYS, WEBHOOK_FAILING
from core.variables import unfilled

from .common import (
    E164_PATTERN,
    FirstMessageMode,
    HttpUrlText,
    LlmProvider,
    Query,
    RequestBody,
    SttProvider,
    TtsProvider,
)
from .tools import Tools, tools_wire

_NAME = Field(min_length=1, max_length=200)
_PROMPT = Field(max_length=100_000)
_MODEL = Field(default=None, min_length=1, max_length=200)
MAX_FALLBACKS = 3


def _distinct(providers: list[str]) -> list[str]:
    if len(set(providers)) != len(providers):
        raise ValueError("a provider may be listed only once")
    return providers


# Further providers tried in order when the one before fails mid-call; each validated like the primary.
FallbackStt = Annotated[list[SttProvider], Field(max_length=MAX_FALLBACKS), AfterValidator(_distinct)]
FallbackLlm = Annotated[list[LlmProvider], Field(max_length=MAX_FALLBACKS), AfterValidator(_distinct)]
FallbackTts = Annotated[list[TtsProvider], Field(max_length=MAX_FALLBACKS), AfterValidator(_distinct)]
_ERROR_MESSAGE = Field(default=None, min_length=1, max_length=1_000)
MAX_BACKCHANNEL_WORDS = 50


def _backchannels(words: list[str]) -> list[str]:
    """Lower-case, trimmed, each once; a phrase of several words is matched whole ("uh huh")."""
    out = list(dict.fromkeys(" ".join(w.lower().split()) for w in words))
    if "" in out:
        raise ValueError("a backchannel word cannot be blank")
    return out


BackchannelWords = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=40)]],
    Field(max_length=MAX_BACKCHANNEL_WORDS),
    AfterValidator(_backchannels),
]


class _TurnTaking(RequestBody):
    """An agent's turn-taking settings (docs/calls.md, When a turn ends); null: the product's default."""

    minEndpointingDelay: float | None = Field(
        default=None, ge=0, le=5, description="Seconds of silence before a finished-sounding turn ends (0.4)."
    )
    maxEndpointingDelay: float | None = Field(
        default=None, ge=0.1, le=30, description="Longest wait after an unfinished-sounding turn, seconds (3.0)."
    )
    interruptionMinWords: int | None = Field(
        default=None, ge=0, le=10, description="Words the caller must say to interrupt the agent (0: speech alone)."
    )
    interruptionMinDuration: float | None = Field(
        default=None, ge=0.05, le=5, description="Seconds of caller speech before the agent is interrupted (0.5)."
    )
    backchannelWords: BackchannelWords | None = Field(
        default=None, description='Acknowledgements that never interrupt the agent ("mhm", "yeah", "uh huh").'
    )
    preemptiveGeneration: bool | None = Field(
        default=None, description="Start the reply on the STT's final transcript, before the turn is over (true)."
    )

    @model_validator(mode="after")
    def _delays_in_order(self) -> _TurnTaking:
        low, high = self.minEndpointingDelay, self.maxEndpointingDelay
        if low is not None and high is not None and low > high:
            raise ValueError("minEndpointingDelay cannot be above maxEndpointingDelay")
        return self


_SLUG = Field(default=None, min_length=1, max_length=64, pattern=r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_DESCRIPTION = Field(default=None, max_length=2_000)
_ID = Field(default=None, min_length=1, max_length=200)
AgentType = Literal["inbound", "outbound"]
AgentStatus = Literal["active", "inactive"]
VoicemailAction = Literal["hangup", "leave_message"]


def _alias(*names: str) -> Any:
    return AliasChoices(*names)


class VoiceSettings(RequestBody):
    """002's voice settings. ``voice_id`` is the agent's voice when ``voiceId`` is not set; ``provider`` and
    ``temperature`` are kept as given."""

    provider: str | None = Field(default=None, min_length=1, max_length=64)
    voice_id: str | None = Field(default=None, min_length=1, max_length=200)
    temperature: float | None = Field(default=None, ge=0, le=2)


def context_size(value: dict[str, Any] | None) -> dict[str, Any] | None:
    import json

    if value is not None and len(json.dumps(value)) > 32_768:
        raise ValueError("context data is limited to 32 KiB of JSON")
    return value


ContextData = Annotated[dict[str, Any] | None, AfterValidator(context_size)]


class _AgentExtras(_TurnTaking):
    """The fields 002 and 003 add to an agent, in camelCase with their own snake_case names accepted too."""

    slug: str | None = _SLUG
    description: str | None = _DESCRIPTION
    enabled: bool | None = None
    clientId: str | None = Field(
        default=None, min_length=1, max_length=200, validation_alias=_alias("clientId", "client_id")
    )
    voiceSettings: VoiceSettings | None = Field(
        default=None, validation_alias=_alias("voiceSettings", "voice_settings")
    )
    type: AgentType | None = None
    status: AgentStatus | None = None
    contextData: ContextData = Field(default=None, validation_alias=_alias("contextData", "context_data"))
    phoneNumber: str | None = Field(
        default=None, pattern=E164_PATTERN, validation_alias=_alias("phoneNumber", "phone_number")
    )
    campaign: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The campaign its calls belong to unless the call names one.",
    )
    tools: Tools | None = Field(
        default=None, description="What the LLM may call mid-conversation: HTTP tools and call tools (docs/tools.md)."
    )
    contextWebhookUrl: HttpUrlText | None = Field(
        default=None, description="POSTed before each call starts; the JSON object it answers joins the context."
    )
    webhookUrl: HttpUrlText | None = Field(
        default=None, description="POSTed after each call: session, transcript, tool calls, analysis and cost."
    )
    voicemailDetection: bool | None = Field(
        default=None, description="Outbound phone calls: detect an answering machine before speaking (off)."
    )
    voicemailAction: VoicemailAction | None = Field(
        default=None, description="On a voicemail greeting: hang up (the default), or leave voicemailMessage."
    )
    voicemailMessage: str | None = Field(
        default=None, min_length=1, max_length=2_000, description="Said after the greeting's beep or silence."
    )
    recordingEnabled: bool | None = Field(
        default=None,
        description="Record its calls (stereo Ogg/Opus, caller left, agent right); null: VOXARENA_RECORDING_DEFAULT.",
    )
    recordingNotice: str | None = Field(
        default=None,
        min_length=1,
        max_length=2_000,
        description="Said first, before anything else, on a call that is recorded (the consent notice).",
    )


class AgentCreate(_AgentExtras):
    name: str = _NAME
    systemPrompt: str = Field(max_length=100_000, validation_alias=_alias("systemPrompt", "system_prompt"))
    sttProvider: SttProvider = "deepgram"
    llmProvider: LlmProvider = "gemini"
    ttsProvider: TtsProvider = "elevenlabs"
    firstMessage: str | None = Field(default=None, max_length=10_000)
    firstMessageMode: FirstMessageMode = "assistant_waits"
    voiceId: str | None = Field(default=None, min_length=1, max_length=200, validation_alias=_alias("voiceId", "voice"))
    sttModel: str | None = _MODEL
    llmModel: str | None = _MODEL
    ttsModel: str | None = _MODEL
    language: str | None = Field(default=None, min_length=2, max_length=35)
    fallbackSttProviders: FallbackStt | None = None
    fallbackLlmProviders: FallbackLlm | None = None
    fallbackTtsProviders: FallbackTts | None = None
    errorMessage: str | None = _ERROR_MESSAGE

    @model_validator(mode="after")
    def _leave_message_says_something(self) -> AgentCreate:
        if self.voicemailAction == "leave_message" and self.voicemailMessage is None:
            raise ValueError("voicemailAction leave_message needs a voicemailMessage")
        return self


class AgentUpdate(_AgentExtras):
    """PUT and PATCH: every field optional; what is sent replaces what is stored."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    systemPrompt: str | None = Field(
        default=None, max_length=100_000, validation_alias=_alias("systemPrompt", "system_prompt")
    )
    sttProvider: SttProvider | None = None
    llmProvider: LlmProvider | None = None
    ttsProvider: TtsProvider | None = None
    firstMessage: str | None = Field(default=None, max_length=10_000)
    firstMessageMode: FirstMessageMode | None = None
    voiceId: str | None = Field(default=None, min_length=1, max_length=200, validation_alias=_alias("voiceId", "voice"))
    sttModel: str | None = _MODEL
    llmModel: str | None = _MODEL
    ttsModel: str | None = _MODEL
    language: str | None = Field(default=None, min_length=2, max_length=35)
    fallbackSttProviders: FallbackStt | None = None
    fallbackLlmProviders: FallbackLlm | None = None
    fallbackTtsProviders: FallbackTts | None = None
    errorMessage: str | None = _ERROR_MESSAGE

    @model_validator(mode="after")
    def _required_fields_not_null(self) -> AgentUpdate:
        for name in (
            "name",
            "systemPrompt",
            "sttProvider",
            "llmProvider",
            "ttsProvider",
            "firstMessageMode",
            "enabled",
            "type",
            "status",
        ):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def changes(self) -> dict[str, object]:
        dumped = self.model_dump()  # nested models (voiceSettings) as plain data
        return {name: dumped[name] for name in self.model_fields_set}


class Agent(BaseModel):
    id: str
    name: str
    systemPrompt: str
    sttProvider: str
    llmProvider: str
    ttsProvider: str
    firstMessage: str | None
    firstMessageMode: str
    voiceId: str | None
    sttModel: str | None
    llmModel: str | None
    ttsModel: str | None
    language: str | None
    fallbackSttProviders: list[str] = Field(description="STT providers tried in order when the primary fails.")
    fallbackLlmProviders: list[str] = Field(description="LLM providers tried in order when the primary fails.")
    fallbackTtsProviders: list[str] = Field(description="TTS providers tried in order when the primary fails.")
    errorMessage: str | None = Field(
        description="What the agent says before it ends a call on a provider failure (null: a default apology)."
    )
    createdAt: str
    updatedAt: str
    slug: str = Field(description="Unique within the tenant; made from the name when not given.")
    description: str | None
    enabled: bool = Field(description="A disabled agent takes no calls (409).")
    clientId: str | None
    voiceSettings: dict[str, Any] | None
    type: AgentType
    status: AgentStatus = Field(description="An inactive agent takes no calls (409).")
    contextData: dict[str, Any] | None
    phoneNumber: str | None
    totalCalls: int = Field(description="Calls the agent has taken (read-only).")
    totalMinutes: float = Field(description="Their total length in minutes (read-only).")
    campaign: str | None = Field(default=None, description="Default campaign of its calls and text sessions.")
    minEndpointingDelay: float | None = Field(default=None, description="null: the product's default.")
    maxEndpointingDelay: float | None = Field(default=None, description="null: the product's default.")
    interruptionMinWords: int | None = Field(default=None, description="null: the product's default.")
    interruptionMinDuration: float | None = Field(default=None, description="null: the product's default.")
    backchannelWords: list[str] = Field(default_factory=list, description="Never interrupt the agent.")
    preemptiveGeneration: bool | None = Field(default=None, description="null: the product's default (on).")
    tools: list[dict[str, Any]] = Field(default_factory=list, description="Header values masked.")
    contextWebhookUrl: str | None = Field(default=None, description="The pre-call context webhook.")
    webhookUrl: str | None = Field(default=None, description="The post-call webhook.")
    webhookStatus: Literal["ok", "failing"] | None = Field(
        default=None, description="failing: its last 10 deliveries or more failed in a row (null: no webhook)."
    )
    webhookFailures: int = Field(default=0, description="Failed deliveries in a row.")
    voicemailDetection: bool = Field(default=False, description="Outbound phone calls: who answered, first.")
    voicemailAction: VoicemailAction = Field(default="hangup", description="What a voicemail greeting gets.")
    voicemailMessage: str | None = Field(default=None, description="The message left on a voicemail.")
    recordingEnabled: bool | None = Field(
        default=None, description="Its calls are recorded (null: the product's default, VOXARENA_RECORDING_DEFAULT)."
    )
    recordingNotice: str | None = Field(default=None, description="Said first on a recorded call.")
    warnings: list[str] = Field(
        default_factory=list,
        description="{{placeholders}} in systemPrompt or firstMessage that only a call's context can fill.",
    )


class AgentList(BaseModel):
    agents: list[Agent]
    total: int


# ---- wire <-> storage ----

_WIRE_COLUMNS = {
    "name": "name",
    "systemPrompt": "system_prompt",
    "sttProvider": "stt_provider",
    "llmProvider": "llm_provider",
    "ttsProvider": "tts_provider",
    "firstMessage": "first_message",
    "firstMessageMode": "first_message_mode",
    "slug": "slug",
    "description": "description",
    "enabled": "enabled",
    "clientId": "client_id",
    "type": "agent_type",
    "status": "status",
    "contextData": "context_data",
    "phoneNumber": "phone_number",
}
_LISTS = ("fallbackSttProviders", "fallbackLlmProviders", "fallbackTtsProviders", "backchannelWords")


def storage(data: dict[str, Any]) -> dict[str, Any]:
    """Wire names (camelCase) to the repository's storage terms; only the keys present are carried over."""
    out: dict[str, Any] = {}
    for wire, col in _WIRE_COLUMNS.items():
        if wire in data:
            out[col] = data[wire]
    for key in CONFIG_KEYS:
        if key in data:
            out[key] = data[key]
    settings = out.get("voiceSettings")
    if isinstance(settings, dict):
        out["voiceSettings"] = {k: v for k, v in settings.items() if v is not None} or None
        if settings.get("voice_id") and not data.get("voiceId"):
            out["voiceId"] = settings["voice_id"]
    if out.get("tools") is not None:
        out["tools"] = [
            t.model_dump(exclude_none=True)
            if isinstance(t, BaseModel)
            else {k: v for k, v in t.items() if v is not None}
            for t in out["tools"]
        ]
    return out


def agent_wire(rec: dict[str, Any]) -> dict[str, Any]:
    """001's Agent, with the added fields."""
    config = rec["config"]
    out = {wire: rec[col] for wire, col in _WIRE_COLUMNS.items()}
    out.update(
        {
            "id": rec["id"],
            "createdAt": rec["created_at"],
            "updatedAt": rec["updated_at"],
            "totalCalls": rec["total_calls"],
            "totalMinutes": rec["total_minutes"],
        }
    )
    for key in CONFIG_KEYS:
        out[key] = config.get(key)
    for key in _LISTS:
        out[key] = list(out[key] or [])
    out["tools"] = tools_wire(config.get("tools"))
    out["voicemailDetection"] = bool(config.get("voicemailDetection"))
    out["voicemailAction"] = config.get("voicemailAction") or "hangup"
    failures = rec.get("webhook_failures") or 0
    out["webhookFailures"] = failures
    out["webhookStatus"] = (
        None if not config.get("webhookUrl") else ("failing" if failures >= WEBHOOK_FAILING else "ok")
    )
    context_keys = rec["context_data"].keys() if isinstance(rec["context_data"], dict) else ()
    out["warnings"] = unfilled(
        [("systemPrompt", rec["system_prompt"]), ("firstMessage", rec["first_message"])], context_keys
    )
    return out


class AgentV1(BaseModel):
    """002's agent (snake_case)."""

    id: str
    slug: str
    name: str
    description: str | None
    client_id: str | None
    enabled: bool
    voice_settings: dict[str, Any] | None
    system_prompt: str
    status: AgentStatus
    type: AgentType
    created_at: str
    updated_at: str
    tools: list[dict[str, Any]] = Field(default_factory=list, description="Header values masked.")


def agent_v1_wire(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": rec["id"],
        "slug": rec["slug"],
        "name": rec["name"],
        "description": rec["description"],
        "client_id": rec["client_id"],
        "enabled": rec["enabled"],
        "voice_settings": rec["config"].get("voiceSettings"),
        "system_prompt": rec["system_prompt"],
        "status": rec["status"],
        "type": rec["agent_type"],
        "created_at": rec["created_at"],
        "updated_at": rec["updated_at"],
        "tools": tools_wire(rec["config"].get("tools"), snake=True),
    }


class AgentV1Create(RequestBody):
    name: str = _NAME
    slug: str | None = _SLUG
    description: str | None = _DESCRIPTION
    system_prompt: str = Field(default="", max_length=100_000)
    voice_settings: VoiceSettings | None = None
    client_id: str | None = _ID
    enabled: bool = True
    tools: Tools | None = None

    def to_storage(self) -> dict[str, Any]:
        return storage(
            {
                "name": self.name,
                "slug": self.slug,
                "description": self.description,
                "systemPrompt": self.system_prompt,
                "enabled": self.enabled,
                "clientId": self.client_id,
                "voiceSettings": self.voice_settings.model_dump() if self.voice_settings else None,
                "sttProvider": "deepgram",
                "llmProvider": "gemini",
                "ttsProvider": "elevenlabs",
                "tools": self.tools,
            }
        )


class AgentV1Update(RequestBody):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    slug: str | None = _SLUG
    description: str | None = _DESCRIPTION
    system_prompt: str | None = Field(default=None, max_length=100_000)
    voice_settings: VoiceSettings | None = None
    client_id: str | None = _ID
    enabled: bool | None = None
    tools: Tools | None = None

    @model_validator(mode="after")
    def _not_null(self) -> AgentV1Update:
        for name in ("name", "system_prompt", "enabled"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def to_storage(self) -> dict[str, Any]:
        names = {
            "name": "name",
            "slug": "slug",
            "description": "description",
            "system_prompt": "systemPrompt",
            "client_id": "clientId",
            "enabled": "enabled",
            "voice_settings": "voiceSettings",
            "tools": "tools",
        }
        data: dict[str, Any] = {}
        for field in self.model_fields_set:
            value = getattr(self, field)
            data[names[field]] = value.model_dump() if isinstance(value, BaseModel) else value
        return storage(data)


AGENTS_PAGE_DEFAULT = 100
AGENTS_PAGE_MAX = 500


class AgentPage(Query):
    """001's page/limit (as on GET /api/sessions): a tenant with thousands of agents is listed a page at a time."""

    page: int = Field(default=1, ge=1, le=1_000_000)
    limit: int = Field(default=AGENTS_PAGE_DEFAULT, ge=1, le=AGENTS_PAGE_MAX)


class AgentV1Query(AgentPage):
    client_id: str | None = Field(default=None, max_length=200)
    active: bool | None = None


class AgentQuery(AgentPage):
    """003's filters on GET /api/agents."""

    status: AgentStatus | None = None
    type: AgentType | None = None
    tenant_id: str | None = Field(
        default=None,
        max_length=200,
        description="Must be the tenant the request acts "
        "in (X-Tenant-ID or the personal one); another tenant's id lists nothing.",
    )
