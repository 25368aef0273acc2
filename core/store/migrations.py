"""Versioned schema migrations, applied in ascending version order at start, each in its own transaction.

A database records the versions it has (``_migrations``), so it gets exactly the steps it lacks, whatever order
older releases applied theirs in. A new step takes the next version number and goes at the end of ``MIGRATIONS``.

Every row carries ``owner_id``: the id of the tenant that owns it (since version 5; before that, the user's id:
version 5 moved each user's rows into their personal tenant). Timestamps are ISO 8601
UTC text of fixed width (``2026-01-02T03:04:05.123456Z``) so they sort as text. Money is integer nano-USD.
"""

from __future__ import annotations

import itertools
import logging
import re
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlite_utils

from core.store.tenants import personal_tenant_id, slugify
from core.store.timefmt import now_iso

if TYPE_CHECKING:
    from core.secrets import SecretBox

log = logging.getLogger("voxarena.store")

# SQL, or a function of the connection and the secret box (None where the process has no key: a step that needs it
# then refuses, see MigrationNeedsKey).
Step = str | Callable[[sqlite3.Connection, "SecretBox | None"], None]

MIGRATIONS: list[tuple[int, str, Step]] = [
    (
        1,
        "core schema",
        """
CREATE TABLE agents (
  id TEXT PRIMARY KEY,
  owner_id TEXT NOT NULL,
  name TEXT NOT NULL,
  system_prompt TEXT NOT NULL,
  stt_provider TEXT NOT NULL,
  llm_provider TEXT NOT NULL,
  tts_provider TEXT NOT NULL,
  first_message TEXT,
  first_message_mode TEXT NOT NULL DEFAULT 'assistant_waits'
    CHECK (first_message_mode IN ('assistant_speaks_first', 'assistant_waits')),
  config TEXT NOT NULL DEFAULT '{}',
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  deleted_at TEXT
);
CREATE INDEX agents_owner ON agents(owner_id, deleted_at, created_at);

CREATE TABLE sessions (
  id TEXT PRIMARY KEY,
  owner_id TEXT NOT NULL,
  agent_id TEXT NOT NULL REFERENCES agents(id),
  room_name TEXT,
  direction TEXT NOT NULL DEFAULT 'inbound' CHECK (direction IN ('inbound', 'outbound')),
  outbound_phone_number TEXT,
  call_status TEXT,
  status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'active', 'ended')),
  job_id TEXT,
  started_at TEXT NOT NULL,
  ended_at TEXT,
  duration_ms INTEGER,
  end_reason TEXT,
  error TEXT,
  last_activity_at TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE INDEX sessions_owner_started ON sessions(owner_id, started_at);
CREATE INDEX sessions_room ON sessions(room_name);
CREATE INDEX sessions_live ON sessions(status, last_activity_at);

CREATE TABLE transcript_items (
  id INTEGER PRIMARY KEY,
  session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
  owner_id TEXT NOT NULL,
  item_key TEXT NOT NULL,
  speaker TEXT NOT NULL CHECK (speaker IN ('USER', 'AGENT')),
  content TEXT NOT NULL,
  interrupted INTEGER NOT NULL DEFAULT 0,
  metrics TEXT,
  timestamp TEXT NOT NULL,
  UNIQUE (session_id, item_key)
);
CREATE INDEX transcript_session ON transcript_items(session_id, timestamp, id);
CREATE INDEX transcript_owner_time ON transcript_items(owner_id, timestamp);

CREATE TABLE analyses (
  session_id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
  owner_id TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('completed', 'failed')),
  summary TEXT,
  sentiment TEXT,
  sentiment_score REAL,
  topics TEXT,
  outcome TEXT,
  action_items TEXT,
  error TEXT,
  attempts INTEGER NOT NULL DEFAULT 1,
  created_at TEXT NOT NULL
);

CREATE TABLE usage_events (
  id TEXT PRIMARY KEY,
  owner_id TEXT NOT NULL,
  session_id TEXT REFERENCES sessions(id),
  agent_id TEXT,
  provider TEXT NOT NULL,
  model TEXT,
  event_type TEXT NOT NULL CHECK (event_type IN ('stt_minutes', 'llm_tokens', 'tts_characters')),
  token_kind TEXT,
  quantity TEXT NOT NULL,
  unit TEXT NOT NULL,
  unit_cost TEXT,
  total_cost_nanos INTEGER,
  priced INTEGER NOT NULL,
  price_version TEXT,
  idempotency_key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  source TEXT NOT NULL,
  occurred_at TEXT NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (owner_id, idempotency_key)
);
CREATE INDEX usage_session ON usage_events(session_id, occurred_at);
CREATE INDEX usage_owner_time ON usage_events(owner_id, occurred_at);

-- Kept on write in the same transaction as the event, so cost reads never scan the ledger.
CREATE TABLE cost_rollups (
  owner_id TEXT NOT NULL,
  day TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  provider TEXT NOT NULL,
  event_type TEXT NOT NULL,
  total_cost_nanos INTEGER NOT NULL DEFAULT 0,
  event_count INTEGER NOT NULL DEFAULT 0,
  unpriced_count INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (owner_id, day, agent_id, provider, event_type)
) WITHOUT ROWID;

CREATE TABLE outbound_calls (
  id TEXT PRIMARY KEY,
  owner_id TEXT NOT NULL,
  agent_id TEXT NOT NULL REFERENCES agents(id),
  session_id TEXT REFERENCES sessions(id),
  room_name TEXT NOT NULL,
  phone_number TEXT NOT NULL,
  status TEXT NOT NULL,
  sip_status_code INTEGER,
  sip_status TEXT,
  failure_reason TEXT,
  callback_url TEXT,
  answered_at TEXT,
  started_at TEXT NOT NULL,
  ended_at TEXT,
  duration_ms INTEGER,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX calls_owner ON outbound_calls(owner_id, created_at);
CREATE INDEX calls_room ON outbound_calls(room_name);

CREATE TABLE call_events (
  id INTEGER PRIMARY KEY,
  call_id TEXT NOT NULL REFERENCES outbound_calls(id) ON DELETE CASCADE,
  owner_id TEXT NOT NULL,
  status TEXT NOT NULL,
  sip_status_code INTEGER,
  detail TEXT,
  created_at TEXT NOT NULL
);

CREATE TABLE callback_deliveries (
  id INTEGER PRIMARY KEY,
  call_id TEXT NOT NULL REFERENCES outbound_calls(id) ON DELETE CASCADE,
  owner_id TEXT NOT NULL,
  event_status TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  url TEXT NOT NULL,
  response_status INTEGER,
  error TEXT,
  signature TEXT NOT NULL,
  delivered INTEGER NOT NULL,
  created_at TEXT NOT NULL
);

CREATE TABLE user_secrets (
  owner_id TEXT PRIMARY KEY,
  callback_secret TEXT NOT NULL,
  created_at TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
  event_id TEXT PRIMARY KEY,
  event TEXT NOT NULL,
  room_name TEXT,
  received_at TEXT NOT NULL
);
""",
    ),
    (
        2,
        "per-session cost rollup",
        """
CREATE TABLE session_costs (
  session_id TEXT PRIMARY KEY,
  owner_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  total_cost_nanos INTEGER NOT NULL DEFAULT 0,
  event_count INTEGER NOT NULL DEFAULT 0,
  unpriced_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX session_costs_agent ON session_costs(owner_id, agent_id);
""",
    ),
    (
        3,
        "leaner ledger: rowid primary key, the idempotency key as the only unique index",
        """
CREATE TABLE usage_events_v3 (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL,
  owner_id TEXT NOT NULL,
  session_id TEXT REFERENCES sessions(id),
  agent_id TEXT,
  provider TEXT NOT NULL,
  model TEXT,
  event_type TEXT NOT NULL CHECK (event_type IN ('stt_minutes', 'llm_tokens', 'tts_characters')),
  token_kind TEXT,
  quantity TEXT NOT NULL,
  unit TEXT NOT NULL,
  unit_cost TEXT,
  total_cost_nanos INTEGER,
  priced INTEGER NOT NULL,
  price_version TEXT,
  idempotency_key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  source TEXT NOT NULL,
  occurred_at TEXT NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (owner_id, idempotency_key)
);
INSERT INTO usage_events_v3 (id, owner_id, session_id, agent_id, provider, model, event_type, token_kind, quantity,
  unit, unit_cost, total_cost_nanos, priced, price_version, idempotency_key, request_hash, source, occurred_at,
  created_at)
SELECT id, owner_id, session_id, agent_id, provider, model, event_type, token_kind, quantity, unit, unit_cost,
  total_cost_nanos, priced, price_version, idempotency_key, request_hash, source, occurred_at, created_at
FROM usage_events ORDER BY created_at;
DROP TABLE usage_events;
ALTER TABLE usage_events_v3 RENAME TO usage_events;
-- The event id is a function of (owner, idempotency key), so the unique key above already makes it unique.
CREATE INDEX usage_session ON usage_events(session_id, occurred_at);
""",
    ),
    (
        4,
        "dispatch tracking, skipped analyses, providers per turn",
        """
-- A dispatched call is watched until its job starts: the dispatch to retry or delete, how many were made, and when
-- the caller was first seen in the room (the dispatch timeout counts from there).
ALTER TABLE sessions ADD COLUMN dispatch_id TEXT;
ALTER TABLE sessions ADD COLUMN dispatch_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN dispatched_at TEXT;
ALTER TABLE sessions ADD COLUMN caller_joined_at TEXT;
CREATE INDEX sessions_pending ON sessions(status, created_at) WHERE status = 'pending';
-- Which STT/LLM/TTS provider served an agent turn (JSON), so a fallback taking over is visible per turn.
ALTER TABLE transcript_items ADD COLUMN providers TEXT;
-- An analysis can now be skipped (no caller speech, no agent ever joined): not run, not billed.
CREATE TABLE analyses_v4 (
  session_id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
  owner_id TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('completed', 'failed', 'skipped')),
  summary TEXT,
  sentiment TEXT,
  sentiment_score REAL,
  topics TEXT,
  outcome TEXT,
  action_items TEXT,
  error TEXT,
  attempts INTEGER NOT NULL DEFAULT 1,
  created_at TEXT NOT NULL
);
INSERT INTO analyses_v4 (session_id, owner_id, status, summary, sentiment, sentiment_score, topics, outcome,
  action_items, error, attempts, created_at)
SELECT session_id, owner_id, status, summary, sentiment, sentiment_score, topics, outcome, action_items, error,
  attempts, created_at FROM analyses;
DROP TABLE analyses;
ALTER TABLE analyses_v4 RENAME TO analyses;
""",
    ),
    (
        5,
        "tenants, members, API keys, clients; agents gain the Autonomite and Phony fields",
        lambda conn, _box: _v5(conn),
    ),
    (
        6,
        "local accounts",
        """
-- Local accounts for the embedded issuer: `voxarena user create` adds them, POST /api/v1/auth/login checks them.
-- The password is an argon2id hash (PHC string); failure slowing is kept in memory, not here.
CREATE TABLE users (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE COLLATE NOCASE,
  password_hash TEXT NOT NULL,
  is_admin INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
""",
    ),
    (
        7,
        "outbound call events as an outbox of signed callbacks",
        """
-- Each status change of an outbound call is an event; its callback is delivered from here (an outbox), in order per
-- call, retried with backoff, each attempt kept in callback_deliveries.
ALTER TABLE call_events ADD COLUMN event_id TEXT;
ALTER TABLE call_events ADD COLUMN payload TEXT;
ALTER TABLE call_events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE call_events ADD COLUMN deliver_after TEXT;
ALTER TABLE call_events ADD COLUMN delivered_at TEXT;
ALTER TABLE call_events ADD COLUMN given_up INTEGER NOT NULL DEFAULT 0;
CREATE INDEX call_events_outbox ON call_events(call_id, id) WHERE delivered_at IS NULL AND given_up = 0;
ALTER TABLE callback_deliveries ADD COLUMN event_id TEXT;
ALTER TABLE outbound_calls ADD COLUMN end_reason TEXT;
""",
    ),
    (
        8,
        "the ledger takes sip_minutes (the line of an outbound call)",
        """
CREATE TABLE usage_events_v8 (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL,
  owner_id TEXT NOT NULL,
  session_id TEXT REFERENCES sessions(id),
  agent_id TEXT,
  provider TEXT NOT NULL,
  model TEXT,
  event_type TEXT NOT NULL CHECK (event_type IN ('stt_minutes', 'llm_tokens', 'tts_characters', 'sip_minutes')),
  token_kind TEXT,
  quantity TEXT NOT NULL,
  unit TEXT NOT NULL,
  unit_cost TEXT,
  total_cost_nanos INTEGER,
  priced INTEGER NOT NULL,
  price_version TEXT,
  idempotency_key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  source TEXT NOT NULL,
  occurred_at TEXT NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (owner_id, idempotency_key)
);
INSERT INTO usage_events_v8 SELECT * FROM usage_events ORDER BY seq;
DROP TABLE usage_events;
ALTER TABLE usage_events_v8 RENAME TO usage_events;
CREATE INDEX usage_session ON usage_events(session_id, occurred_at);
""",
    ),
    (
        9,
        "the live context of a call",
        """
-- What the agent knows about this call beyond its prompt (Phony's `context`: set when the call is placed, merged
-- into while it runs), JSON.
ALTER TABLE sessions ADD COLUMN context TEXT;
""",
    ),
    (
        10,
        "who spoke an agent message",
        """
-- NULL: the agent's own reply; 'supervisor': text an operator had the agent say (POST /api/override/text).
ALTER TABLE transcript_items ADD COLUMN source TEXT;
""",
    ),
    (
        11,
        "phone numbers and inbound calls",
        """
-- A number routes to one place, so it is registered once across tenants. The LiveKit objects that make it ring:
-- its inbound trunk (made at registration) and, while an agent is assigned, its dispatch rule.
CREATE TABLE phone_numbers (
  id TEXT PRIMARY KEY,
  owner_id TEXT NOT NULL,
  phone_number TEXT NOT NULL UNIQUE,
  friendly_name TEXT,
  capabilities TEXT NOT NULL DEFAULT '["voice"]',
  agent_id TEXT REFERENCES agents(id),
  trunk_id TEXT NOT NULL,
  dispatch_rule_id TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX phone_numbers_owner ON phone_numbers(owner_id, created_at);
-- An inbound phone call's numbers (the caller's and the one it dialled) and the number it came in on.
ALTER TABLE sessions ADD COLUMN from_number TEXT;
ALTER TABLE sessions ADD COLUMN to_number TEXT;
ALTER TABLE sessions ADD COLUMN phone_number_id TEXT;
""",
    ),
    (
        12,
        "live call events (the /events/ws stream and each call's audit trail)",
        """
-- Written by the repositories in the same transaction as the change they report, by whichever process made it
-- (a job process, the API); the API tails it by id to feed the websocket stream. Pruned after
-- VOXARENA_EVENT_RETENTION_SECONDS. call_sid is the session id; payload is JSON.
CREATE TABLE live_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  owner_id TEXT NOT NULL,
  call_sid TEXT NOT NULL,
  type TEXT NOT NULL,
  payload TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE INDEX live_events_call ON live_events(call_sid, id);
CREATE INDEX live_events_created ON live_events(created_at);
""",
    ),
    (
        13,
        "text and ConversationRelay sessions; the tenant's Twilio auth token",
        """
-- How the conversation reaches the agent: 'voice' (a LiveKit room), 'text' (POST /trigger-agent, /ws/chat) or
-- 'relay' (Twilio ConversationRelay: Twilio does the speech, the agent's LLM answers in text).
ALTER TABLE sessions ADD COLUMN channel TEXT NOT NULL DEFAULT 'voice' CHECK (channel IN ('voice', 'text', 'relay'));
-- The caller's own ids (Autonomite's user_id and conversation_id; a relay call's caller number and CallSid).
ALTER TABLE sessions ADD COLUMN user_id TEXT;
ALTER TABLE sessions ADD COLUMN conversation_id TEXT;
-- A text conversation continued after its session ended goes on in a new session that names the one before.
ALTER TABLE sessions ADD COLUMN previous_session_id TEXT;
CREATE INDEX sessions_channel_live ON sessions(channel, status, last_activity_at) WHERE channel != 'voice';
-- Sealed with the API's SecretBox; written by PUT /api/settings/twilio, never read back over HTTP.
CREATE TABLE twilio_settings (
  owner_id TEXT PRIMARY KEY,
  auth_token TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
""",
    ),
    (
        14,
        "external costs and outreach events (004), campaigns on sessions",
        """
-- Costs reported from outside the calls (004's cost events, sent by automation workflows). Each is also one row of
-- the ledger (usage_events: same id, event_type llm_tokens, source cost-events or llm-usage), so every cost total
-- keeps being one exact sum; this table keeps what the ledger has no columns for. cost_nanos is what the ledger
-- counts: the reported cost, else the price book's, else NULL (unpriced); both figures are kept side by side.
CREATE TABLE cost_events (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  owner_id TEXT NOT NULL,
  idempotency_key TEXT,
  natural_key TEXT,
  item_hash TEXT NOT NULL,
  provider TEXT NOT NULL,
  model TEXT,
  tokens_in INTEGER NOT NULL DEFAULT 0,
  tokens_out INTEGER NOT NULL DEFAULT 0,
  cost_nanos INTEGER,
  reported_cost_nanos INTEGER,
  priced_cost_nanos INTEGER,
  price_version TEXT,
  campaign TEXT,
  contact_email TEXT,
  purpose TEXT,
  workflow_id TEXT,
  run_id TEXT,
  metadata TEXT,
  source TEXT NOT NULL,
  occurred_at TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX cost_events_idempotency ON cost_events(owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX cost_events_natural ON cost_events(owner_id, natural_key) WHERE natural_key IS NOT NULL;
CREATE INDEX cost_events_owner_time ON cost_events(owner_id, occurred_at);
CREATE INDEX cost_events_campaign ON cost_events(owner_id, campaign, occurred_at) WHERE campaign IS NOT NULL;
-- 004's outreach events (emails sent, delivered, replied, opted out, bounced), per campaign and sequence step.
CREATE TABLE outreach_events (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  owner_id TEXT NOT NULL,
  idempotency_key TEXT,
  natural_key TEXT,
  item_hash TEXT NOT NULL,
  contact_email TEXT NOT NULL,
  campaign TEXT,
  step INTEGER,
  event_type TEXT NOT NULL CHECK (event_type IN ('sent', 'delivered', 'replied', 'opt_out', 'bounced')),
  provider TEXT,
  provider_message_id TEXT,
  metadata TEXT,
  event_ts TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX outreach_idempotency ON outreach_events(owner_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX outreach_natural ON outreach_events(owner_id, natural_key) WHERE natural_key IS NOT NULL;
CREATE INDEX outreach_owner_time ON outreach_events(owner_id, event_ts);
-- The campaign a call or text session belongs to (given when it is placed, else its agent's default).
ALTER TABLE sessions ADD COLUMN campaign TEXT;
CREATE INDEX sessions_owner_campaign ON sessions(owner_id, campaign, started_at) WHERE campaign IS NOT NULL;
""",
    ),
    (
        15,
        "one-time ConversationRelay URLs",
        """
-- Each URL from POST /api/relay/urls carries a ticket (kept here only as its SHA-256) naming the tenant and agent.
-- The first handshake Twilio signs for it consumes it (consumed_at), whichever API node it reaches, so a captured
-- signature cannot open a second call. Rows are pruned a day after they expire.
CREATE TABLE relay_tickets (
  ticket_hash TEXT PRIMARY KEY,
  owner_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  consumed_at TEXT
);
CREATE INDEX relay_tickets_expires ON relay_tickets(expires_at);
""",
    ),
    (16, "callback signing secrets sealed", lambda conn, box: _seal_callback_secrets(conn, box)),
    (
        17,
        "nodes, leases and the node running each call",
        """
CREATE TABLE nodes (
  id TEXT PRIMARY KEY,
  hostname TEXT NOT NULL,
  pid INTEGER NOT NULL,
  started_at TEXT NOT NULL,
  heartbeat_at TEXT NOT NULL,
  draining INTEGER NOT NULL DEFAULT 0,
  stopped_at TEXT,
  stop_reason TEXT,
  open_slots INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  expires_at TEXT NOT NULL
);
ALTER TABLE sessions ADD COLUMN node_id TEXT;
CREATE INDEX sessions_node_live ON sessions(node_id) WHERE status != 'ended';
""",
    ),
    (
        18,
        "the tool calls of each session",
        """
CREATE TABLE tool_calls (
  id INTEGER PRIMARY KEY,
  session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
  owner_id TEXT NOT NULL,
  call_key TEXT NOT NULL,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  arguments TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'error', 'timeout', 'refused')),
  http_status INTEGER,
  latency_ms INTEGER,
  result TEXT,
  started_at TEXT NOT NULL,
  ended_at TEXT,
  UNIQUE (session_id, call_key)
);
CREATE INDEX tool_calls_session ON tool_calls(session_id, started_at, id);
""",
    ),
    (
        19,
        "the agents' post-call webhook outbox and its attempts",
        """
CREATE TABLE webhook_outbox (
  id INTEGER PRIMARY KEY,
  event_id TEXT NOT NULL UNIQUE,
  owner_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  url TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  deliver_after TEXT NOT NULL,
  delivered_at TEXT,
  given_up INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(deliver_after) WHERE delivered_at IS NULL AND given_up = 0;
CREATE TABLE webhook_attempts (
  id INTEGER PRIMARY KEY,
  event_id TEXT NOT NULL,
  owner_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  url TEXT NOT NULL,
  response_status INTEGER,
  error TEXT,
  signature TEXT NOT NULL,
  delivered INTEGER NOT NULL,
  created_at TEXT NOT NULL
);
CREATE INDEX webhook_attempts_session ON webhook_attempts(session_id, id);
ALTER TABLE agents ADD COLUMN webhook_failures INTEGER NOT NULL DEFAULT 0;
""",
    ),
    (
        20,
        "campaigns: contacts, their attempts, and the do-not-call list",
        """
CREATE TABLE campaigns (
  id TEXT PRIMARY KEY,
  owner_id TEXT NOT NULL,
  name TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('draft', 'running', 'paused', 'completed', 'cancelled')),
  status_reason TEXT,
  schedule TEXT,
  max_concurrent_calls INTEGER NOT NULL DEFAULT 1,
  retry TEXT NOT NULL,
  circuit_breaker TEXT,
  callback_url TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  started_at TEXT,
  ended_at TEXT,
  UNIQUE (owner_id, name)
);
CREATE INDEX campaigns_running ON campaigns(status) WHERE status = 'running';
CREATE TABLE campaign_contacts (
  id INTEGER PRIMARY KEY,
  campaign_id TEXT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
  owner_id TEXT NOT NULL,
  phone_number TEXT NOT NULL,
  variables TEXT,
  status TEXT NOT NULL CHECK (status IN ('pending', 'in_progress', 'retrying', 'completed', 'busy', 'no_answer',
    'voicemail', 'failed', 'cancelled', 'do_not_call')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  UNIQUE (campaign_id, phone_number)
);
CREATE INDEX campaign_contacts_due ON campaign_contacts(campaign_id, status, next_attempt_at);
CREATE TABLE campaign_attempts (
  id INTEGER PRIMARY KEY,
  contact_id INTEGER NOT NULL REFERENCES campaign_contacts(id) ON DELETE CASCADE,
  campaign_id TEXT NOT NULL,
  owner_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  call_id TEXT NOT NULL,
  session_id TEXT,
  status TEXT NOT NULL,
  end_reason TEXT,
  sip_status_code INTEGER,
  started_at TEXT NOT NULL,
  ended_at TEXT,
  UNIQUE (contact_id, attempt)
);
CREATE INDEX campaign_attempts_campaign ON campaign_attempts(campaign_id, started_at);
CREATE TABLE do_not_call (
  owner_id TEXT NOT NULL,
  phone_number TEXT NOT NULL,
  created_at TEXT NOT NULL,
  PRIMARY KEY (owner_id, phone_number)
);
""",
    ),
    (
        21,
        "sessions: who answered an outbound call (voicemail detection)",
        """
ALTER TABLE sessions ADD COLUMN answered_by TEXT;
""",
    ),
    (
        22,
        "sessions: the call's recording (core/recordings.py)",
        """
-- The recording's key in its storage (<tenant>/<session id>.ogg), its length and its size once finalized.
ALTER TABLE sessions ADD COLUMN recording_key TEXT;
ALTER TABLE sessions ADD COLUMN recording_duration_ms INTEGER;
ALTER TABLE sessions ADD COLUMN recording_bytes INTEGER;
CREATE INDEX sessions_recording_ended ON sessions(ended_at) WHERE recording_key IS NOT NULL;
""",
    ),
    (
        23,
        "the ledger takes storage_minutes (a call's recording)",
        # PostgreSQL changes the constraint in place (core/store/pg.py PG_FORMS)
        """
CREATE TABLE usage_events_v23 (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL,
  owner_id TEXT NOT NULL,
  session_id TEXT REFERENCES sessions(id),
  agent_id TEXT,
  provider TEXT NOT NULL,
  model TEXT,
  event_type TEXT NOT NULL
    CHECK (event_type IN ('stt_minutes', 'llm_tokens', 'tts_characters', 'sip_minutes', 'storage_minutes')),
  token_kind TEXT,
  quantity TEXT NOT NULL,
  unit TEXT NOT NULL,
  unit_cost TEXT,
  total_cost_nanos INTEGER,
  priced INTEGER NOT NULL,
  price_version TEXT,
  idempotency_key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  source TEXT NOT NULL,
  occurred_at TEXT NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (owner_id, idempotency_key)
);
INSERT INTO usage_events_v23 SELECT * FROM usage_events ORDER BY seq;
DROP TABLE usage_events;
ALTER TABLE usage_events_v23 RENAME TO usage_events;
CREATE INDEX usage_session ON usage_events(session_id, occurred_at);
""",
    ),
    (
        24,
        "sessions: why a call's recording could not be kept (an upload to object storage that failed)",
        """
ALTER TABLE sessions ADD COLUMN recording_error TEXT;
""",
    ),
    (
        25,
        "tenants: whether their calls are recorded when the agent does not say (null: the product's default)",
        """
ALTER TABLE tenants ADD COLUMN recording_default INTEGER;
""",
    ),
]

# Tables whose rows belong to an owner; version 5 rewrote each owner_id from a user id to that user's personal tenant.
OWNED_TABLES = (
    "agents",
    "sessions",
    "transcript_items",
    "analyses",
    "usage_events",
    "cost_rollups",
    "session_costs",
    "outbound_calls",
    "call_events",
    "callback_deliveries",
    "user_secrets",
)

V5_SCHEMA = """
CREATE TABLE tenants (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  subdomain TEXT UNIQUE COLLATE NOCASE,
  status TEXT NOT NULL CHECK (status IN ('trial', 'active', 'suspended')),
  personal_of TEXT UNIQUE,
  max_agents INTEGER,
  max_concurrent_calls INTEGER,
  rate_limit_rps REAL,
  billing_email TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE tenant_members (
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  user_id TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('owner', 'member')),
  created_at TEXT NOT NULL,
  PRIMARY KEY (tenant_id, user_id)
) WITHOUT ROWID;
CREATE INDEX tenant_members_user ON tenant_members(user_id);
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  owner_id TEXT NOT NULL,
  name TEXT NOT NULL,
  prefix TEXT NOT NULL,
  key_hash TEXT NOT NULL UNIQUE,
  created_by TEXT NOT NULL,
  created_at TEXT NOT NULL,
  last_used_at TEXT,
  revoked_at TEXT
);
CREATE INDEX api_keys_owner ON api_keys(owner_id, created_at);
CREATE TABLE clients (
  owner_id TEXT NOT NULL,
  id TEXT NOT NULL,
  name TEXT NOT NULL,
  domain TEXT,
  active INTEGER NOT NULL DEFAULT 1,
  settings TEXT NOT NULL DEFAULT '{}',
  secrets TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (owner_id, id)
);
CREATE INDEX clients_owner ON clients(owner_id, created_at);
ALTER TABLE agents ADD COLUMN slug TEXT;
ALTER TABLE agents ADD COLUMN description TEXT;
ALTER TABLE agents ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1;
ALTER TABLE agents ADD COLUMN client_id TEXT;
ALTER TABLE agents ADD COLUMN agent_type TEXT NOT NULL DEFAULT 'inbound' CHECK (agent_type IN ('inbound', 'outbound'));
ALTER TABLE agents ADD COLUMN status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive'));
ALTER TABLE agents ADD COLUMN context_data TEXT;
ALTER TABLE agents ADD COLUMN phone_number TEXT;
CREATE INDEX sessions_live_owner ON sessions(owner_id) WHERE status != 'ended';
-- A call of a client's agent runs on the client's LiveKit server: the session remembers which.
ALTER TABLE sessions ADD COLUMN client_id TEXT;
"""


def _statements(script: str) -> list[str]:
    return [s.strip() for s in re.split(r";\s*\n", script) if s.strip()]


def _v5(conn: sqlite3.Connection) -> None:
    for statement in _statements(V5_SCHEMA):
        conn.execute(statement)
    owners: set[str] = set()
    for table in OWNED_TABLES:
        owners.update(r[0] for r in conn.execute(f"SELECT DISTINCT owner_id FROM {table}"))
    now = now_iso()
    for user in sorted(owners):
        tenant = personal_tenant_id(user)
        conn.execute(
            "INSERT INTO tenants (id, name, status, personal_of, created_at, updated_at) "
            "VALUES (?, ?, 'active', ?, ?, ?)",
            [tenant, user, user, now, now],
        )
        conn.execute(
            "INSERT INTO tenant_members (tenant_id, user_id, role, created_at) VALUES (?, ?, 'owner', ?)",
            [tenant, user, now],
        )
        for table in OWNED_TABLES:
            conn.execute(f"UPDATE {table} SET owner_id = ? WHERE owner_id = ?", [tenant, user])
    # Every agent gets a slug from its name, unique within its tenant (deleted agents keep theirs, unindexed).
    taken: dict[str, set[str]] = {}
    for agent_id, owner, name, deleted in conn.execute(
        "SELECT id, owner_id, name, deleted_at FROM agents ORDER BY created_at, id"
    ).fetchall():
        slug = slugify(name)
        if deleted is None:
            used = taken.setdefault(owner, set())
            base, n = slug, 2
            while slug in used:
                slug, n = f"{base}-{n}", n + 1
            used.add(slug)
        conn.execute("UPDATE agents SET slug = ? WHERE id = ?", [slug, agent_id])
    conn.execute("CREATE UNIQUE INDEX agents_slug ON agents(owner_id, slug) WHERE deleted_at IS NULL")


class MigrationNeedsKey(ValueError):
    """A pending step seals secrets and this process was opened without the secret box."""


def _seal_callback_secrets(conn: sqlite3.Connection, box: SecretBox | None) -> None:
    # Until now the signing secrets were stored as written; from here on the column holds them sealed.
    rows = conn.execute("SELECT owner_id, callback_secret FROM user_secrets").fetchall()
    if not rows:
        return
    if box is None:
        raise MigrationNeedsKey(
            "migration 16 seals the stored callback signing secrets and needs the secret key: "
            "run `voxarena migrate` or `voxarena serve` with this data dir and VOXARENA_SECRET_KEY"
        )
    for owner_id, plain in rows:
        conn.execute("UPDATE user_secrets SET callback_secret = ? WHERE owner_id = ?", [box.seal(plain), owner_id])


def check_order(migrations: list[tuple[int, str, Step]]) -> None:
    """Versions must be strictly ascending, so that list order and version order are the same thing."""
    versions = [m[0] for m in migrations]
    for before, after in itertools.pairwise(versions):
        if after <= before:
            raise ValueError(f"migrations are not in strictly ascending version order: {after} comes after {before}")


def migrate(
    db: sqlite_utils.Database,
    *,
    secrets: SecretBox | None = None,
    migrations: list[tuple[int, str, Step]] | None = None,
) -> list[int]:
    """Apply pending migrations (``MIGRATIONS`` unless a list is given); returns the versions applied now."""
    migrations = MIGRATIONS if migrations is None else migrations
    check_order(migrations)
    db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (version INTEGER PRIMARY KEY, "
        "name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    done = {row[0] for row in db.execute("SELECT version FROM _migrations").fetchall()}
    applied = []
    for version, name, sql in migrations:
        if version in done:
            continue
        log.info("applying migration %d: %s", version, name)
        stamp = now_iso()
        try:
            if callable(sql):
                db.conn.execute("BEGIN IMMEDIATE")
                if db.execute("SELECT 1 FROM _migrations WHERE version = ?", [version]).fetchone():
                    db.conn.execute("ROLLBACK")  # another process applied it while we waited for the lock
                    continue
                sql(db.conn, secrets)
                db.conn.execute(
                    "INSERT INTO _migrations(version, name, applied_at) VALUES (?, ?, ?)", [version, name, stamp]
                )
                db.conn.execute("COMMIT")
            else:
                quoted = name.replace("'", "''")
                db.conn.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\nINSERT INTO _migrations(version, name, applied_at) "
                    f"VALUES ({version}, '{quoted}', '{stamp}');\nCOMMIT;"
                )
        except (sqlite3.Error, MigrationNeedsKey):
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            # Another process (a job process opening the same file) may have applied it first.
            if db.execute("SELECT 1 FROM _migrations WHERE version = ?", [version]).fetchone():
                continue
            raise
        applied.append(version)
    return applied


def schema_version(db: sqlite_utils.Database) -> int:
    row = db.execute("SELECT MAX(version) FROM _migrations").fetchone()
    return int(row[0] or 0)
