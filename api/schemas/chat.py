"""Wire models of Autonomite's POST /trigger-agent (voice and text modes), the chat websocket's messages and the
tenant's Twilio settings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, RootModel, model_validator

from ..services.chat import MAX_MESSAGE_CHARS
from .common import CAMPAIGN, RequestBody
from .livekit import ROOM_PATTERN


class TriggerAgentRequest(RequestBody):
    """Voice: `{room_name, agent_slug, user_id, conversation_id, platform: "livekit"}`. Text: `{message, agent_slug,
    session_id?, user_id, conversation_id, mode: "text"}`. Without `mode`, a body with a `message` is text."""

    agent_slug: str | None = Field(default=None, min_length=1, max_length=100)
    agent_id: str | None = Field(
        default=None, min_length=1, max_length=100, description="The agent's id, instead of its slug."
    )
    mode: Literal["voice", "text"] | None = None
    platform: Literal["livekit"] | None = None
    room_name: str | None = Field(default=None, pattern=ROOM_PATTERN, description="Voice: generated when absent.")
    message: str | None = Field(default=None, max_length=MAX_MESSAGE_CHARS)
    session_id: str | None = Field(
        default=None, max_length=100, description="Text: continue this conversation (a new one when absent or unknown)."
    )
    user_id: str | None = Field(default=None, max_length=200)
    conversation_id: str | None = Field(default=None, max_length=200)
    campaign: str | None = CAMPAIGN

    @model_validator(mode="after")
    def _resolve(self) -> TriggerAgentRequest:
        if self.agent_slug is None and self.agent_id is None:
            raise ValueError("give agent_slug (or agent_id)")
        if self.mode is None:
            self.mode = "text" if self.message is not None else "voice"
        if self.mode == "text" and not (self.message or "").strip():
            raise ValueError("text mode needs a non-empty message")
        return self


class TriggerVoiceResponse(BaseModel):
    success: Literal[True]
    mode: Literal["voice"]
    room_name: str
    session_id: str
    token: str
    server_url: str
    identity: str
    agent_id: str
    user_id: str | None
    conversation_id: str | None


class TriggerTextResponse(BaseModel):
    success: Literal[True]
    mode: Literal["text"]
    session_id: str
    conversation_id: str | None
    response: str
    timestamp: str
    agent_id: str
    user_id: str | None
    previous_session_id: str | None = Field(
        description="Set when `session_id` named a conversation that had ended: this session continues it."
    )


class TriggerAgentResponse(
    RootModel[Annotated[TriggerVoiceResponse | TriggerTextResponse, Field(discriminator="mode")]]
):
    pass


class SessionEnded(BaseModel):
    success: Literal[True]
    session_id: str
    status: Literal["ended"]


class TwilioSettingsBody(RequestBody):
    auth_token: str = Field(min_length=8, max_length=200, description="The Twilio account's auth token (write-only).")


class TwilioSettings(BaseModel):
    configured: bool
    auth_token: str | None = Field(description="Masked: the token is never shown again.")
    updated_at: str | None
