"""The price book (pricing.yaml) as frozen, validated data, and exact pricing of usage.

Rates are decimal strings parsed to ``Decimal``; a cost is ``quantity x unit_cost`` rounded once, half-even, to
integer nano-USD, and totals are integer sums of those. Nothing here is ever a float.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

EventType = Literal["stt_minutes", "llm_tokens", "tts_characters", "sip_minutes", "storage_minutes"]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]
NANOS = Decimal(1_000_000_000)
DEFAULT_FILE = Path(__file__).resolve().parents[1] / "pricing.yaml"

# Units a rate may be quoted in, and how many of the event's quantity unit each one is.
_MINUTES = ("stt_minutes", "sip_minutes", "storage_minutes")
UNITS: dict[str, tuple[tuple[str, ...], Decimal]] = {
    "minute": (_MINUTES, Decimal(1)),
    "second": (_MINUTES, Decimal(1) / Decimal(60)),
    "hour": (_MINUTES, Decimal(60)),
    "token": (("llm_tokens",), Decimal(1)),
    "1k_tokens": (("llm_tokens",), Decimal(1000)),
    "1m_tokens": (("llm_tokens",), Decimal(1_000_000)),
    "character": (("tts_characters",), Decimal(1)),
    "1k_characters": (("tts_characters",), Decimal(1000)),
    "1m_characters": (("tts_characters",), Decimal(1_000_000)),
}


class PricingError(ValueError):
    """pricing.yaml is unreadable or invalid; the product refuses to start."""


class Unpriced(LookupError):
    """No price for this provider/model/event type at that time. Recorded as unpriced, never priced at 0."""


class Price(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str = Field(min_length=1)
    event_type: EventType
    model: str = "*"
    token_kind: Literal["input", "output", "*"] = "*"
    unit: str
    rate: Decimal
    effective_from: date
    source: str | None = None

    @field_validator("rate", mode="before")
    @classmethod
    def _rate_is_a_decimal_string(cls, v: object) -> object:
        if not isinstance(v, str):
            raise ValueError('rate must be a quoted decimal string (e.g. "0.0043"), never a float')
        try:
            d = Decimal(v)
        except InvalidOperation:
            raise ValueError(f"rate {v!r} is not a decimal number") from None
        if not d.is_finite() or d < 0:
            raise ValueError("rate must be a finite, non-negative number")
        return d

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, v: str) -> str:
        if v not in UNITS:
            raise ValueError(f"unknown unit {v!r}; use one of {sorted(UNITS)}")
        return v

    def unit_cost(self) -> Decimal:
        """USD per one unit of the event's quantity (minute, token, character)."""
        kinds, size = UNITS[self.unit]
        if self.event_type not in kinds:
            raise PricingError(f"unit {self.unit} does not fit event type {self.event_type}")
        return self.rate / size


class PriceBookFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1)
    currency: Literal["USD"] = "USD"
    aliases: dict[str, str] = {}
    prices: list[Price] = Field(min_length=1)


@dataclass(frozen=True)
class Quote:
    unit_cost: Decimal
    price_version: str


def to_nanos(amount_usd: Decimal) -> int:
    """An exact USD amount in integer nano-USD, rounded once, half-even."""
    return int((amount_usd * NANOS).to_integral_value(rounding=ROUND_HALF_EVEN))


def cost_nanos(quantity: Decimal, unit_cost: Decimal) -> int:
    """quantity x unit_cost in integer nano-USD, rounded once, half-even."""
    return to_nanos(quantity * unit_cost)


def usd(nanos: int) -> float:
    """Nano-USD as a JSON number. int/10**9 is correctly rounded, and repr of the result is the exact decimal for
    any total below 2**53 nano-USD (about 9 million USD), so no digit is lost on the wire."""
    return nanos / 1_000_000_000


class PriceBook:
    def __init__(self, spec: PriceBookFile, *, path: Path | None = None) -> None:
        self.version = spec.version
        self.path = path
        self.aliases = {k.lower(): v for k, v in spec.aliases.items()}
        self.prices = sorted(spec.prices, key=lambda p: p.effective_from, reverse=True)
        for p in self.prices:
            p.unit_cost()  # unit/event type mismatches fail at load, not at the first call

    @classmethod
    def load(cls, path: Path | str | None = None) -> PriceBook:
        p = Path(path) if path else DEFAULT_FILE
        try:
            raw = yaml.safe_load(p.read_text())
        except OSError as e:
            raise PricingError(f"cannot read price book {p}: {e}") from None
        except yaml.YAMLError as e:
            raise PricingError(f"price book {p} is not valid YAML: {e}") from None
        try:
            spec = PriceBookFile.model_validate(raw)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            raise PricingError(f"price book {p} is invalid: {problems}") from None
        return cls(spec, path=p)

    def provider_key(self, reported: str) -> str:
        """Our provider key for a name LiveKit reports ("Deepgram", "Gemini", ...); our own keys pass through."""
        return self.aliases.get(reported.lower(), reported.lower())

    def quote(
        self, *, provider: str, event_type: str, model: str | None, token_kind: str | None, at: datetime
    ) -> Quote:
        day = at.astimezone(UTC).date()
        key = self.provider_key(provider)
        candidates = [
            p
            for p in self.prices
            if p.provider == key
            and p.event_type == event_type
            and p.effective_from <= day
            and p.token_kind in ("*", token_kind or "*")
        ]
        # An exact model price beats the wildcard; among equals the newest effective date wins (sorted above).
        for wanted in (model, "*"):
            for p in candidates:
                if p.model == wanted:
                    return Quote(unit_cost=p.unit_cost(), price_version=f"{self.version}/{p.effective_from}")
        raise Unpriced(f"no price for {key} {event_type} model={model or '*'} on {day}")
