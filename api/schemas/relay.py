"""Wire models of the one-time ConversationRelay URLs (POST /api/relay/urls)."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from .common import RequestBody


class RelayUrlRequest(RequestBody):
    agent_id: str | None = Field(default=None, min_length=1, max_length=100)
    agent_slug: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _named(self) -> RelayUrlRequest:
        if self.agent_id is None and self.agent_slug is None:
            raise ValueError("give agent_id (or agent_slug)")
        return self


class RelayUrl(BaseModel):
    url: str = Field(description="Put it in <ConversationRelay url=...>: Twilio signs it, and it opens one call.")
    agent_id: str
    expires_at: str = Field(description="It must be opened before then (VOXARENA_RELAY_URL_TTL_SECONDS).")
