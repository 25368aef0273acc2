from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from api.services.reprice import reprice
from core.store import usage as ledger
from core.store.timefmt import parse_iso
from pipelines.metering import make_event
from pipelines.pricing import PriceBook

BOOK = PriceBook.load()


def _seed(store, owner="alice"):
    events = []
    for i, (provider, kind, qty, day) in enumerate(
        [
            ("deepgram", "stt_minutes", "10", "2026-03-01"),
            ("deepgram", "stt_minutes", "5.5", "2026-03-02"),
            ("gemini", "llm_tokens", "100000", "2026-03-02"),
            ("resemble", "tts_characters", "1000", "2026-04-01"),
        ]
    ):
        events.append(
            make_event(
                BOOK,
                key=f"k{i}",
                owner_id=owner,
                session_id=None,
                agent_id=None,
                provider=provider,
                model=None,
                event_type=kind,
                quantity=Decimal(qty),
                at=parse_iso(day + "T10:00:00Z"),
            ).as_dict()
        )
    store.write_sync(ledger.record_events, events)


def test_repricing_reports_the_difference_and_keeps_the_ledger(store, tmp_path, settings):
    _seed(store)
    other = tmp_path / "other.yaml"
    other.write_text(
        "version: cheaper\nprices:\n"
        "- {provider: deepgram, event_type: stt_minutes, unit: minute, rate: '0.0030', effective_from: 2024-01-01}\n"
        "- {provider: gemini, event_type: llm_tokens, unit: 1m_tokens, rate: '0.10', effective_from: 2024-01-01}\n"
    )
    before = store.read_sync(lambda db: list(db.query("SELECT * FROM usage_events ORDER BY id")))
    report = store.read_sync(
        lambda db: reprice(
            db, PriceBook.load(other), start="2026-03-01T00:00:00.000000Z", end="2026-04-01T00:00:00.000000Z"
        )
    )
    data = report.as_dict()
    assert data["by_provider"]["deepgram/stt_minutes"] == {
        "events": 2,
        "original_usd": "0.06665",
        "repriced_usd": "0.0465",
        "difference_usd": "-0.02015",
        "unpriced_before": 0,
        "unpriced_after": 0,
    }
    assert data["by_provider"]["gemini/llm_tokens"]["original_usd"] == "0.0075"
    assert data["by_provider"]["gemini/llm_tokens"]["repriced_usd"] == "0.01"
    assert "resemble/tts_characters" not in data["by_provider"]  # April is outside the period
    assert data["total"]["events"] == 3
    assert store.read_sync(lambda db: list(db.query("SELECT * FROM usage_events ORDER BY id"))) == before

    cli = subprocess.run(
        [
            str(Path(sys.executable).with_name("voxarena")),
            "reprice",
            "--pricing",
            str(other),
            "--data-dir",
            str(settings.data_dir),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "VOXARENA_DATABASE_URL": settings.database_url},
    )
    assert cli.returncode == 0, cli.stderr
    full = json.loads(cli.stdout)
    assert full["total"]["events"] == 4 and full["total"]["unpriced_after"] == 1  # no resemble price in 'cheaper'
