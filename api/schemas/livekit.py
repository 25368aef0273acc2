from __future__ import annotations

from pydantic import BaseModel, Field

from .common import RequestBody

ROOM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"


class TokenRequest(RequestBody):
    agentId: str = Field(min_length=1, max_length=100)
    roomName: str | None = Field(default=None, pattern=ROOM_PATTERN, description="Room to join; generated when absent.")


class TokenResponse(BaseModel):
    token: str
    roomName: str
    sessionId: str
    serverUrl: str
    identity: str


class WebhookAck(BaseModel):
    received: bool
    duplicate: bool
