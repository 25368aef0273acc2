"""Campaigns (batch outbound calling, on 004's ``/api/campaigns``) and the tenant's do-not-call list. Numbers are
checked by a real parser (``phonenumbers``): E.164, and a number that exists; a refused list names every contact it
refuses by its index."""

from __future__ import annotations

import csv
import io
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import BaseModel, Field, field_validator, model_validator

from core.store.campaigns import ContactStatus

from .common import HttpUrlText, Query, RequestBody, Variables

MAX_CONTACTS = 10_000
RetryOn = Literal["busy", "no_answer", "voicemail", "failed"]
CampaignStatus = Literal["draft", "running", "paused", "completed", "cancelled"]


def number_problem(number: str) -> str | None:
    """Why `number` is not a dialable E.164 number, or None."""
    if not number:
        return "missing"
    if not number.startswith("+"):
        return "not in E.164 form (+ and the country code)"
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as e:
        return f"not a phone number ({e})"
    if phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) != number:
        return "not in E.164 form (digits only after the +)"
    if not phonenumbers.is_valid_number(parsed):
        return "not a valid number for its country"
    return None


class ContactIn(RequestBody):
    # checked with the whole list (`_check_contacts`), so that every refused contact is named in one answer
    phone_number: str = Field(max_length=64)
    variables: Variables | None = None


def _check_contacts(contacts: list[ContactIn], *, field: str = "contacts") -> list[ContactIn]:
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, c in enumerate(contacts):
        why = number_problem(c.phone_number)
        if why is not None:
            problems.append(f"{field}[{i}].phone_number {c.phone_number!r}: {why}")
        elif c.phone_number in seen:
            problems.append(f"{field}[{i}].phone_number: {c.phone_number} is also {field}[{seen[c.phone_number]}]")
        else:
            seen[c.phone_number] = i
    if problems:
        shown = "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ValueError(shown)
    return contacts


class Schedule(RequestBody):
    timezone: str = Field(min_length=1, max_length=64, description="An IANA time zone, e.g. Europe/Paris.")
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(min_length=1, max_length=7)
    start: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="HH:MM, local time.")
    end: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$", description="HH:MM, local, exclusive.")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{name!r} is not an IANA time zone") from None
        return name

    @model_validator(mode="after")
    def _window(self) -> Schedule:
        if self.start >= self.end:
            raise ValueError("start must be before end")
        if len(set(self.days)) != len(self.days):
            raise ValueError("a day may be listed only once")
        return self


class RetryPolicy(RequestBody):
    max_attempts: int = Field(default=1, ge=1, le=10, description="Attempts per contact, the first included.")
    on: list[RetryOn] = Field(default=["busy", "no_answer"], max_length=4)
    backoff_seconds: int = Field(default=300, ge=30, le=86_400)


class CircuitBreaker(RequestBody):
    failure_ratio: float = Field(gt=0, le=1, description="Pause when more than this share of the calls failed.")
    window_seconds: int = Field(default=600, ge=10, le=86_400)
    min_calls: int = Field(default=5, ge=1, le=1_000)


class CampaignCreate(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    agent_id: str = Field(min_length=1, max_length=200)
    contacts: list[ContactIn] = Field(default_factory=list, max_length=MAX_CONTACTS)
    schedule: Schedule | None = None
    max_concurrent_calls: int = Field(default=1, ge=1, le=100)
    retry: RetryPolicy | None = None
    circuit_breaker: CircuitBreaker | None = None
    callback_url: HttpUrlText | None = Field(default=None, description="A signed callback per attempt's status.")

    @field_validator("contacts")
    @classmethod
    def _contacts(cls, contacts: list[ContactIn]) -> list[ContactIn]:
        return _check_contacts(contacts)


class ContactsIn(RequestBody):
    """``POST /api/campaigns/{id}/contacts``: JSON ``{contacts: [...]}``, or ``text/csv`` with a ``phone_number``
    column (the other columns are the contact's variables)."""

    contacts: list[ContactIn] = Field(min_length=1, max_length=MAX_CONTACTS)

    @field_validator("contacts")
    @classmethod
    def _contacts(cls, contacts: list[ContactIn]) -> list[ContactIn]:
        return _check_contacts(contacts)

    @classmethod
    def from_csv(cls, text: str) -> dict[str, Any]:
        rows = list(csv.DictReader(io.StringIO(text)))
        if rows and "phone_number" not in rows[0]:
            raise ValueError("the CSV needs a phone_number column")
        contacts = []
        for row in rows:
            number = (row.pop("phone_number") or "").strip()
            variables = {k.strip(): v for k, v in row.items() if k and k.strip() and v not in (None, "")}
            contacts.append({"phone_number": number, **({"variables": variables} if variables else {})})
        return {"contacts": contacts}


class Progress(BaseModel):
    pending: int
    in_progress: int
    retrying: int
    completed: int
    busy: int
    no_answer: int
    voicemail: int
    failed: int
    cancelled: int
    do_not_call: int = Field(description="Skipped: the number is on the tenant's do-not-call list.")


class CampaignCosts(BaseModel):
    total_cost: float
    total_cost_nanos: int
    by_outcome: dict[str, float] = Field(description="USD per attempt outcome (completed, busy, ...).")
    by_outcome_nanos: dict[str, int] = Field(description="The same, exact: billionths of a USD.")
    successful_calls: int = Field(description="Calls whose analysis outcome is in VOXARENA_SUCCESS_OUTCOMES.")
    cost_per_success: float | None
    cost_per_success_nanos: int | None = Field(description="The same, exact (rounded down to the nano).")


class Campaign(BaseModel):
    id: str
    name: str
    agent_id: str
    status: CampaignStatus
    status_reason: str | None = Field(description="Why it is paused (the circuit breaker) or ended.")
    schedule: dict[str, Any] | None
    max_concurrent_calls: int
    retry: dict[str, Any]
    circuit_breaker: dict[str, Any] | None
    callback_url: str | None
    created_at: str
    updated_at: str
    started_at: str | None
    ended_at: str | None
    progress: Progress
    costs: CampaignCosts


class ContactsAdded(BaseModel):
    added: int
    duplicates: int = Field(description="Numbers already in the campaign: not added again.")


class Attempt(BaseModel):
    attempt: int
    status: str
    started_at: str
    ended_at: str | None
    end_reason: str | None
    sip_status_code: int | None
    session_id: str | None
    call_id: str
    cost_nanos: int


class Contact(BaseModel):
    phone_number: str
    variables: dict[str, Any] | None
    status: ContactStatus
    attempts: list[Attempt]
    next_attempt_at: str | None


class ContactPage(BaseModel):
    contacts: list[Contact]
    total: int


class ContactQuery(Query):
    page: int = Field(default=1, ge=1, le=1_000_000)
    limit: int = Field(default=100, ge=1, le=1_000)


class CampaignAction(BaseModel):
    id: str
    status: CampaignStatus


class DoNotCallIn(RequestBody):
    phone_numbers: list[str] = Field(min_length=1, max_length=MAX_CONTACTS)

    @field_validator("phone_numbers")
    @classmethod
    def _numbers(cls, numbers: list[str]) -> list[str]:
        problems = [f"phone_numbers[{i}] {n!r}: {why}" for i, n in enumerate(numbers) if (why := number_problem(n))]
        if problems:
            raise ValueError("; ".join(problems[:20]))
        return numbers


class DoNotCallEntry(BaseModel):
    phone_number: str
    created_at: str


class DoNotCallList(BaseModel):
    numbers: list[DoNotCallEntry]
    added: int | None = None


def campaign_wire(rec: dict[str, Any]) -> dict[str, Any]:
    from core.store.usage import usd

    costs = rec["costs"]
    return {
        **{k: rec[k] for k in Campaign.model_fields if k not in ("progress", "costs", "retry")},
        "retry": rec["retry"],
        "progress": rec["progress"],
        "costs": {
            "total_cost": usd(costs["total_cost_nanos"]),
            "total_cost_nanos": costs["total_cost_nanos"],
            "by_outcome": {k: usd(v) for k, v in sorted(costs["by_outcome_nanos"].items())},
            "by_outcome_nanos": dict(sorted(costs["by_outcome_nanos"].items())),
            "successful_calls": costs["successful_calls"],
            "cost_per_success": usd(costs["cost_per_success_nanos"]),
            "cost_per_success_nanos": costs["cost_per_success_nanos"],
        },
    }


def contact_wire(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "phone_number": rec["phone_number"],
        "variables": rec["variables"],
        "status": rec["status"],
        "next_attempt_at": rec["next_attempt_at"],
        "attempts": [{k: a[k] for k in Attempt.model_fields} for a in rec["attempt_rows"]],
    }
