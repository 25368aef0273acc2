"""Every setting of the product, in one place, read from environment variables prefixed ``VOXARENA_``.

docs/settings.md's table is generated from ``SETTINGS`` (``python -m api.docgen``); a docs test fails when it is
stale.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pipelines.config import TURN_DETECTION_MODES, VAD_ENGINES

PREFIX = "VOXARENA_"


def _split(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip())


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


@dataclass(frozen=True)
class Settings:
    # --- control API ---
    host: str = field(default="127.0.0.1", metadata={"doc": "Address the control API binds to."})
    port: int = field(default=8080, metadata={"doc": "Port of the control API."})
    data_dir: Path = field(
        default=Path("./data"),
        metadata={"doc": "Directory for the SQLite database and the embedded issuer's key."},
    )
    public_url: str = field(
        default="",
        metadata={"doc": "Public base URL of the API (used as the embedded issuer's `iss`); default http://HOST:PORT."},
    )
    max_body_bytes: int = field(default=1_048_576, metadata={"doc": "Largest accepted request body, in bytes."})
    idle_timeout_seconds: float = field(
        default=5.0,
        metadata={
            "doc": "A connection that sends no complete request headers for this long (from its opening, or "
            "since its last response) is closed; a websocket is set up by such a request."
        },
    )
    max_connections_per_address: int = field(
        default=256,
        metadata={
            "doc": "Open connections one client address may hold; one more is answered 429 and closed. "
            "0: no limit (behind a reverse proxy every client has the proxy's address)."
        },
    )
    log_level: str = field(default="INFO", metadata={"doc": "Python log level."})
    # --- auth ---
    clerk_issuer: str = field(
        default="",
        metadata={
            "doc": "Clerk issuer URL (e.g. https://clerk.example.com). Tokens must carry it as `iss`; "
            "the JWKS is fetched from ISSUER/.well-known/jwks.json unless CLERK_JWKS_URL is set."
        },
    )
    clerk_jwks_url: str = field(default="", metadata={"doc": "Explicit JWKS URL (overrides the issuer's)."})
    clerk_authorized_parties: tuple[str, ...] = field(
        default=(),
        metadata={"doc": "Comma-separated origins accepted in the token's `azp` claim; empty accepts any."},
    )
    jwt_audience: tuple[str, ...] = field(
        default=(),
        metadata={
            "doc": "Comma-separated audiences: when set, a bearer JWT's `aud` must name one of them (the "
            "embedded issuer's tokens carry the first). Empty: `aud` is not checked (Clerk's session "
            "tokens carry none unless a JWT template adds one)."
        },
    )
    secret_key: str = field(
        default="",
        repr=False,
        metadata={
            "doc": "Key for secrets stored in the database (clients' LiveKit secrets, Twilio auth tokens, "
            "callback signing secrets); any string. Empty: a key generated into DATA_DIR/secret.key. "
            "Losing it makes those secrets unreadable."
        },
    )
    admin_users: tuple[str, ...] = field(
        default=(),
        metadata={
            "doc": "Comma-separated user ids (JWT `sub`) of platform admins: they manage every tenant "
            "(`/tenants`); local accounts made with `voxarena user create --admin` are admins too."
        },
    )
    jwks_min_refresh_seconds: float = field(
        default=60.0,
        metadata={"doc": "A token with an unknown `kid` triggers at most one JWKS refetch per this interval."},
    )
    jwks_cache_seconds: float = field(default=3600.0, metadata={"doc": "How long a fetched JWKS is trusted."})
    jwt_leeway_seconds: float = field(default=5.0, metadata={"doc": "Clock leeway for `exp` and `nbf`."})
    login_token_ttl_seconds: int = field(
        default=3600,
        metadata={"doc": "Lifetime of the bearer token POST /api/v1/auth/login issues (embedded issuer only)."},
    )
    # --- rate limits ---
    rate_limit_rps: float = field(
        default=100.0,
        metadata={
            "doc": "Requests per second each credential (bearer token or X-API-Key; the client address when "
            "none is sent) may make to /api and /tenants: a token bucket refilled at this rate."
        },
    )
    rate_limit_burst: int = field(
        default=0,
        metadata={
            "doc": "Size of each bucket: requests that may be made at once after a quiet spell "
            "(X-RateLimit-Limit). 0: twice the bucket's rate."
        },
    )
    rate_limit_auth_rps: float = field(
        default=10.0,
        metadata={"doc": "Requests per second each client address may make to POST /api/v1/auth/login."},
    )
    database_url: str = field(
        default="",
        repr=False,
        metadata={
            "doc": "PostgreSQL URL (postgresql://user:password@host:port/db; ?sslmode=require|verify-full; "
            "?host=/socket/dir) holding every record, so several voxarena nodes share one store. Empty: SQLite "
            "in the data dir. `voxarena db copy --to <url>` moves an existing SQLite database over."
        },
    )
    redis_url: str = field(
        default="",
        repr=False,
        metadata={
            "doc": "Redis URL (redis://, rediss:// or unix://) holding the rate-limit buckets, so several API "
            "processes share them. Empty: buckets live in this process. While Redis is unreachable "
            "each process falls back to its own buckets."
        },
    )
    redis_timeout_seconds: float = field(
        default=0.5,
        metadata={
            "doc": "A Redis answer slower than this counts as an outage (the request then uses this process's bucket)."
        },
    )
    # --- LiveKit ---
    livekit_url: str = field(
        default="",
        metadata={"doc": "LiveKit server URL (ws:// or wss://). Empty: `serve` starts a local dev server on loopback."},
    )
    livekit_api_key: str = field(default="", metadata={"doc": "LiveKit API key."})
    livekit_api_secret: str = field(default="", repr=False, metadata={"doc": "LiveKit API secret."})
    livekit_server_bin: str = field(
        default="",
        metadata={
            "doc": "Path of the livekit-server binary for the embedded dev server "
            "(default: ~/.cache/voxarena/bin/livekit-server, built by .ci/build-livekit.sh)."
        },
    )
    agent_name: str = field(default="voxarena", metadata={"doc": "Agent name the worker registers under."})
    worker_enabled: bool = field(default=True, metadata={"doc": "Run the LiveKit worker beside the API."})
    worker_port: int = field(default=8081, metadata={"doc": "Port of the worker's built-in health server."})
    job_executor: str = field(
        default="process",
        metadata={
            "doc": "`process` (each call in a process of its own), `thread` (every call in the worker's process) or "
            "`hosted` (up to `CALLS_PER_HOST` calls per job process, each on its own thread: docs/deployment.md)."
        },
    )
    calls_per_host: int = field(
        default=4, metadata={"doc": "With the `hosted` executor: calls one job process runs at once."}
    )
    job_host_memory_mb: float = field(
        default=600,
        metadata={"doc": "With the `hosted` executor: a job process over this resident memory takes no new call."},
    )
    job_host_memory_limit_mb: float = field(
        default=1200,
        metadata={
            "doc": "With the `hosted` executor: a job process over this is killed (its calls end, the other "
            "processes' go on); 0 for no limit."
        },
    )
    num_idle_processes: int = field(default=1, metadata={"doc": "Job processes kept warm."})
    turn_detection: str = field(
        default=TURN_DETECTION_MODES[0],
        metadata={
            "doc": "`transcript` (the caller's words decide whether the turn is over, after silero VAD's end "
            "of speech), `model` (LiveKit's local audio end-of-turn model, under LiveKit's Model License), `vad` or "
            "`stt`."
        },
    )
    endpointing_min_delay: float = field(
        default=0.4,
        metadata={
            "doc": "Seconds of silence after the user's speech before the turn may end (the VAD's "
            "end-of-speech silence follows it, between 0.2 and 0.55 s)."
        },
    )
    endpointing_max_delay: float = field(
        default=3.0,
        metadata={"doc": 'Longest wait after an unfinished-sounding turn ("so my number is") before it ends anyway.'},
    )
    vad_engine: str = field(
        default=VAD_ENGINES[0],
        metadata={
            "doc": "`onnx` (livekit-plugins-silero on onnxruntime, MIT, a model per job process) or `native` "
            "(LiveKit's livekit-local-inference build of the same silero model, loaded once and shared by the job "
            "processes: ~12 MB less per call; its models are under LiveKit's Model License, for use with LiveKit "
            "Agents only, so it is not the default)."
        },
    )
    vad_inline: bool = field(
        default=True,
        metadata={
            "doc": "Run the VAD's inference of each 32 ms window on the call's event loop (~0.16 ms a window with "
            "`onnx`, ~0.03 with `native`) rather than handing each window to a thread and back, as LiveKit does: "
            "the hop costs about as much CPU as the onnx inference and more than the native one. `false` gives "
            "the loop that time back, for more CPU per call."
        },
    )
    preemptive_generation: bool = field(
        default=True,
        metadata={
            "doc": "Start the LLM on the STT's final transcript, before the end of the turn is decided; discarded "
            "when the caller goes on (each turn's `llm_requests` counts them). An agent's `preemptiveGeneration` "
            "overrides it."
        },
    )
    audio_input_frame_ms: int = field(
        default=20,
        metadata={
            "doc": "Milliseconds of caller audio per frame handed to the VAD and the STT (LiveKit's RoomIO "
            "`frame_size_ms`; Deepgram is sent each frame as it comes, up to 50 ms): larger frames wake the job "
            "less often (less CPU per call) and reach the STT later by up to the difference (50 ms: the caller "
            "waits ~25 ms longer for each reply, for ~15 % less CPU per call-second, bench/README.md)."
        },
    )
    auto_gain_control: bool = field(
        default=True,
        metadata={"doc": "WebRTC's automatic gain control on the caller's audio before the VAD and the STT."},
    )
    load_threshold: float = field(
        default=0.75,
        metadata={
            "doc": "Worker load (0..1: its active calls against MAX_CONCURRENT_CALLS, and its own processes' "
            "CPU; never other programs') at or above which LiveKit sends no new calls here."
        },
    )
    max_concurrent_calls: int = field(
        default=0,
        metadata={
            "doc": "Calls this worker runs at once; beyond it the token route answers 503 with Retry-After. "
            "0: two per CPU core."
        },
    )
    dispatch_timeout_seconds: float = field(
        default=15.0,
        metadata={
            "doc": "How long a caller in the room waits for the agent's job to start before the dispatch is "
            "retried once; after a second wait the call ends as `no_agent_available`."
        },
    )
    session_sweep_seconds: float = field(default=60.0, metadata={"doc": "How often orphaned sessions are looked for."})
    # --- call recordings ---
    recording_default: bool = field(
        default=False,
        metadata={
            "doc": "Whether calls are recorded when neither their agent's `recordingEnabled` nor their tenant's "
            "`recording_default` says (both null); either one's true or false wins (docs/calls.md, Recordings)."
        },
    )
    recording_retention_days: float = field(
        default=0.0,
        metadata={
            "doc": "Recordings of calls that ended longer ago than this many days are deleted (the file and the "
            "session's recording fields) by an hourly sweeper, on one node of a cluster. 0: kept until deleted."
        },
    )
    recordings_url: str = field(
        default="",
        metadata={
            "doc": "Where finished recordings are kept: empty, the data dir (`DATA_DIR/recordings`); "
            "`s3://BUCKET/PREFIX` for S3 or an S3-compatible store (SeaweedFS, Ceph, R2, ...): each call's file "
            "is written locally while the call runs and uploaded to `PREFIX/TENANT/SESSION.ogg` when it ends "
            "(docs/calls.md, Recordings). The bucket must exist; it is checked at start."
        },
    )
    recordings_s3_endpoint: str = field(
        default="",
        metadata={
            "doc": "The S3 endpoint URL (`https://host[:port]`) of an S3-compatible store; requests then use "
            "path-style addressing. Empty: AWS S3 of RECORDINGS_S3_REGION."
        },
    )
    recordings_s3_region: str = field(
        default="",
        metadata={
            "doc": "The bucket's region (request signing). Empty: AWS_REGION or AWS_DEFAULT_REGION, else us-east-1."
        },
    )
    recordings_s3_access_key_id: str = field(
        default="",
        metadata={
            "doc": "The S3 access key id; with RECORDINGS_S3_SECRET_ACCESS_KEY. Empty, both: the AWS default "
            "credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role)."
        },
    )
    recordings_s3_secret_access_key: str = field(
        default="", repr=False, metadata={"doc": "The S3 secret access key; with RECORDINGS_S3_ACCESS_KEY_ID."}
    )
    node_id: str = field(
        default="",
        metadata={
            "doc": "This node's name in the cluster (nodes sharing one store: VOXARENA_DATABASE_URL). Empty: the host "
            "name, the process id and a random part, new at each start."
        },
    )
    node_heartbeat_seconds: float = field(
        default=5.0, metadata={"doc": "How often this node tells the others (through the store) that it is alive."}
    )
    node_lost_seconds: float = field(
        default=15.0,
        metadata={
            "doc": "A node silent for this long is lost: another node ends its calls as worker_lost and closes their "
            "rooms. Keep it at least three heartbeats."
        },
    )
    session_orphan_seconds: float = field(
        default=900.0,
        metadata={"doc": "A live session with no activity for this long and no running job is closed by the sweeper."},
    )
    drain_timeout_seconds: float = field(default=60.0, metadata={"doc": "How long SIGTERM waits for calls to end."})
    text_session_idle_seconds: float = field(
        default=300.0,
        metadata={
            "doc": "A text conversation (POST /trigger-agent, /ws/chat) with no message for this long ends and "
            "is analysed."
        },
    )
    # --- providers ---
    deepgram_api_key: str = field(default="", repr=False, metadata={"doc": "Deepgram API key."})
    deepgram_base_url: str = field(
        default="https://api.deepgram.com/v1/listen", metadata={"doc": "Deepgram listen URL."}
    )
    assemblyai_api_key: str = field(default="", repr=False, metadata={"doc": "AssemblyAI API key."})
    assemblyai_base_url: str = field(
        default="wss://streaming.assemblyai.com", metadata={"doc": "AssemblyAI streaming base URL."}
    )
    elevenlabs_api_key: str = field(default="", repr=False, metadata={"doc": "ElevenLabs API key (STT and TTS)."})
    elevenlabs_base_url: str = field(
        default="https://api.elevenlabs.io/v1", metadata={"doc": "ElevenLabs API base URL."}
    )
    elevenlabs_voice_id: str = field(
        default="", metadata={"doc": "Default ElevenLabs voice (plugin default if empty)."}
    )
    google_api_key: str = field(default="", repr=False, metadata={"doc": "Gemini API key."})
    google_base_url: str = field(default="", metadata={"doc": "Gemini API base URL (google-genai default if empty)."})
    gemini_model: str = field(default="gemini-2.5-flash", metadata={"doc": "Gemini model for calls and analysis."})
    google_credentials_file: str = field(default="", metadata={"doc": "Service-account JSON for Google Cloud TTS."})
    google_tts_endpoint: str = field(
        default="", metadata={"doc": "Google Cloud TTS gRPC endpoint host:port (default texttospeech.googleapis.com)."}
    )
    openai_api_key: str = field(default="", repr=False, metadata={"doc": "OpenAI API key."})
    openai_base_url: str = field(
        default="https://api.openai.com/v1", metadata={"doc": "OpenAI (or OpenAI-compatible) API base URL."}
    )
    openai_model: str = field(default="gpt-4o-mini", metadata={"doc": "OpenAI model for calls and analysis."})
    resemble_api_key: str = field(default="", repr=False, metadata={"doc": "Resemble API key."})
    resemble_base_url: str = field(
        default="https://f.cluster.resemble.ai", metadata={"doc": "Resemble synthesis base URL."}
    )
    resemble_websocket_url: str = field(
        default="wss://websocket.cluster.resemble.ai/stream", metadata={"doc": "Resemble streaming websocket URL."}
    )
    resemble_voice_uuid: str = field(default="", metadata={"doc": "Default Resemble voice."})
    # --- pricing / metering ---
    pricing_file: str = field(default="", metadata={"doc": "Path of pricing.yaml (default: the repo's)."})
    # --- telephony ---
    sip_outbound_trunk_id: str = field(default="", metadata={"doc": "LiveKit SIP outbound trunk id (ST_...)."})
    sip_carrier: str = field(
        default="sip",
        metadata={
            "doc": "Provider key of the outbound line in pricing.yaml (`sip_minutes`, model: the trunk id or "
            '"*"); without a price there the line\'s minutes are recorded unpriced.'
        },
    )
    sip_ring_timeout_seconds: float = field(default=30.0, metadata={"doc": "Ring timeout of outbound calls."})
    sip_max_call_seconds: float = field(
        default=1800.0, metadata={"doc": "Longest call: outbound, and inbound (set on each number's trunk)."}
    )
    warm_transfer_ring_seconds: float = field(
        default=30.0,
        metadata={
            "doc": "A warm transfer's human who has not answered within this many seconds is given up "
            "(`transfer.declined`, reason `no_answer`) and the caller is back with the agent."
        },
    )
    warm_transfer_decide_seconds: float = field(
        default=30.0,
        metadata={
            "doc": "After answering, the human has this long (from the end of the briefing) to accept (DTMF 1, "
            "or a spoken yes) or decline (DTMF 2, a spoken no); silence is a `no_answer`."
        },
    )
    sip_transfer_allowed_hosts: tuple[str, ...] = field(
        default=(),
        metadata={
            "doc": "Comma-separated SIP hosts a warm transfer may dial by SIP URI although they are (or resolve to) "
            "non-public addresses (a PBX on the private network); any other such host is refused, and a public one "
            "is dialled at the address checked (docs/calls.md, Warm transfer)."
        },
    )
    warm_transfer_hold_audio: str = field(
        default="",
        metadata={
            "doc": "Audio file (any format ffmpeg decodes: wav, mp3, ogg) the caller hears, looped, while a warm "
            "transfer reaches the human; empty: a quiet generated tone (a soft beep every 3 s)."
        },
    )
    sip_inbound_allowed_addresses: tuple[str, ...] = field(
        default=(),
        metadata={
            "doc": "Comma-separated IPs or CIDR ranges the carrier sends inbound calls from, set on each "
            "number's LiveKit inbound trunk; empty: any address (then set the auth below)."
        },
    )
    sip_inbound_auth_username: str = field(
        default="", metadata={"doc": "Digest username the carrier must authenticate inbound calls with; empty: none."}
    )
    sip_inbound_ring_timeout_seconds: float = field(
        default=30.0,
        metadata={
            "doc": "How long an inbound caller rings while no agent has answered (no worker took the call) "
            "before livekit-sip gives up; set on each number's trunk when it is registered."
        },
    )
    sip_inbound_auth_password: str = field(
        default="",
        repr=False,
        metadata={"doc": "Digest password for inbound calls (with SIP_INBOUND_AUTH_USERNAME)."},
    )
    callback_max_attempts: int = field(default=6, metadata={"doc": "Deliveries tried per callback event."})
    callback_backoff_seconds: float = field(default=1.0, metadata={"doc": "First retry delay; doubles per attempt."})
    campaign_dial_interval_seconds: float = field(
        default=2.0,
        metadata={
            "doc": "How often the campaign dialer looks at the running campaigns (settles ended calls, starts new "
            "ones); 0 turns the dialer off on this node (another node of the cluster may run it)."
        },
    )
    context_webhook_timeout_seconds: float = field(
        default=1.5,
        metadata={
            "doc": "How long a call waits for its agent's pre-call context webhook (contextWebhookUrl) before it "
            "starts without it."
        },
    )
    outbound_http_allowed_hosts: tuple[str, ...] = field(
        default=(),
        metadata={
            "doc": "Comma-separated hosts the product may reach on a tenant's behalf although they are (or "
            "resolve to) non-public addresses (callback URLs, clients' LiveKit servers, agents' HTTP tools and "
            "webhooks); every other such URL is refused (docs/outbound-http.md).",
            "alias": "CALLBACK_ALLOWED_HOSTS",
        },
    )
    # --- live event stream ---
    event_retention_seconds: float = field(
        default=86_400.0,
        metadata={
            "doc": "How long live call events (the /events/ws stream, GET /api/calls/{call_sid}/events) are "
            "kept; older ones are pruned every 10 minutes."
        },
    )
    event_queue_size: int = field(
        default=1_000,
        metadata={
            "doc": "Events queued per /events/ws connection; a connection that falls this far behind is "
            "closed with 4008 (slow consumer)."
        },
    )
    event_max_connections: int = field(
        default=10, metadata={"doc": "Concurrent /events/ws connections per API key (per user for a JWT)."}
    )
    event_heartbeat_seconds: float = field(
        default=30.0,
        metadata={"doc": "Ping interval of /events/ws; a connection whose pong is missing after half of it is closed."},
    )
    # --- sockets ---
    socket_recheck_seconds: float = field(
        default=5.0,
        metadata={
            "doc": "Open /events/ws and /ws/chat sockets have their credential re-read from the store this "
            "often (a chat socket also before each message): a revoked API key closes them with 4401, "
            "a suspended tenant or a removed member with 4403."
        },
    )
    chat_max_connections: int = field(
        default=10,
        metadata={
            "doc": "Concurrent /ws/chat sockets per API key (per user for a JWT); beyond it the "
            "handshake is a 429 `connection_limit`. Shared by every API process through "
            "REDIS_URL when it is set."
        },
    )
    chat_max_connections_per_tenant: int = field(
        default=100,
        metadata={
            "doc": "Concurrent /ws/chat sockets per tenant, all its keys and users together "
            "(429 `connection_limit` beyond it; shared through REDIS_URL when set)."
        },
    )
    relay_url_ttl_seconds: float = field(
        default=300.0,
        metadata={"doc": "How long a ConversationRelay URL from POST /api/relay/urls may be opened (once)."},
    )

    # --- analytics ---
    success_outcomes: tuple[str, ...] = field(
        default=(
            "resolved",
            "success",
            "successful",
            "booked",
            "scheduled",
            "confirmed",
            "completed",
            "sold",
            "sale",
            "purchased",
            "converted",
            "qualified",
            "interested",
            "agreed",
            "accepted",
            "paid",
            "answered",
            "helped",
            "appointment",
        ),
        metadata={
            "doc": "Comma-separated words or phrases: a call whose post-call analysis outcome contains one "
            "(whole words, any case) and no negation counts as successful."
        },
    )
    ask_max_rounds: int = field(
        default=4, metadata={"doc": "Most metric-function rounds the LLM may take to answer one POST /api/ask."}
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if isinstance(self.clerk_authorized_parties, str):
            object.__setattr__(self, "clerk_authorized_parties", _split(self.clerk_authorized_parties))
        if isinstance(self.jwt_audience, str):
            object.__setattr__(self, "jwt_audience", _split(self.jwt_audience))
        if isinstance(self.outbound_http_allowed_hosts, str):
            object.__setattr__(self, "outbound_http_allowed_hosts", _split(self.outbound_http_allowed_hosts))
        if isinstance(self.sip_transfer_allowed_hosts, str):
            object.__setattr__(self, "sip_transfer_allowed_hosts", _split(self.sip_transfer_allowed_hosts))
        if isinstance(self.sip_inbound_allowed_addresses, str):
            object.__setattr__(self, "sip_inbound_allowed_addresses", _split(self.sip_inbound_allowed_addresses))
        if bool(self.sip_inbound_auth_username) != bool(self.sip_inbound_auth_password):
            raise ValueError(f"{PREFIX}SIP_INBOUND_AUTH_USERNAME and {PREFIX}SIP_INBOUND_AUTH_PASSWORD go together")
        if isinstance(self.success_outcomes, str):
            object.__setattr__(self, "success_outcomes", _split(self.success_outcomes))
        if isinstance(self.admin_users, str):
            object.__setattr__(self, "admin_users", _split(self.admin_users))
        if self.job_executor not in {"process", "thread", "hosted"}:
            raise ValueError(f"{PREFIX}JOB_EXECUTOR must be 'process', 'thread' or 'hosted', not {self.job_executor!r}")
        if self.calls_per_host < 1:
            raise ValueError(f"{PREFIX}CALLS_PER_HOST must be at least 1")
        if self.job_host_memory_mb < 0 or self.job_host_memory_limit_mb < 0:
            raise ValueError(f"{PREFIX}JOB_HOST_MEMORY_MB and {PREFIX}JOB_HOST_MEMORY_LIMIT_MB must not be negative")
        if not self.rate_limit_rps > 0 or not self.rate_limit_auth_rps > 0:
            raise ValueError(f"{PREFIX}RATE_LIMIT_RPS and {PREFIX}RATE_LIMIT_AUTH_RPS must be positive")
        if self.rate_limit_burst < 0:
            raise ValueError(f"{PREFIX}RATE_LIMIT_BURST must be 0 (twice the rate) or a positive size")
        if not 0 < self.context_webhook_timeout_seconds <= 30:
            raise ValueError(f"{PREFIX}CONTEXT_WEBHOOK_TIMEOUT_SECONDS must be above 0 and at most 30")
        if not self.idle_timeout_seconds > 0:
            raise ValueError(f"{PREFIX}IDLE_TIMEOUT_SECONDS must be positive")
        if self.max_connections_per_address < 0:
            raise ValueError(f"{PREFIX}MAX_CONNECTIONS_PER_ADDRESS must be 0 (no limit) or a positive count")
        if self.login_token_ttl_seconds <= 0:
            raise ValueError(f"{PREFIX}LOGIN_TOKEN_TTL_SECONDS must be positive")
        if self.database_url and not self.database_url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"{PREFIX}DATABASE_URL must start with postgresql:// (empty: SQLite in the data dir)")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{PREFIX}REDIS_URL must start with redis://, rediss:// or unix://")
        if not 0 < 2 * self.node_heartbeat_seconds <= self.node_lost_seconds:
            raise ValueError(
                f"{PREFIX}NODE_HEARTBEAT_SECONDS must be positive and {PREFIX}NODE_LOST_SECONDS at least twice it"
            )
        if self.recording_retention_days < 0:
            raise ValueError(f"{PREFIX}RECORDING_RETENTION_DAYS must be 0 (keep forever) or a positive count")
        if self.recordings_url:
            s3_location(self.recordings_url)  # raises with what is wrong
        if self.recordings_s3_endpoint and not _HTTP_URL.match(self.recordings_s3_endpoint):
            raise ValueError(
                f"{PREFIX}RECORDINGS_S3_ENDPOINT must be an http:// or https:// URL with a host, "
                f"not {self.recordings_s3_endpoint!r}"
            )
        if bool(self.recordings_s3_access_key_id) != bool(self.recordings_s3_secret_access_key):
            raise ValueError(
                f"{PREFIX}RECORDINGS_S3_ACCESS_KEY_ID and {PREFIX}RECORDINGS_S3_SECRET_ACCESS_KEY go together"
            )
        if not self.recordings_url and (self.recordings_s3_endpoint or self.recordings_s3_access_key_id):
            raise ValueError(f"the {PREFIX}RECORDINGS_S3_* settings need {PREFIX}RECORDINGS_URL=s3://BUCKET/PREFIX")
        if not self.text_session_idle_seconds > 0:
            raise ValueError(f"{PREFIX}TEXT_SESSION_IDLE_SECONDS must be positive")
        if self.event_queue_size < 1 or self.event_max_connections < 1 or not self.event_heartbeat_seconds > 0:
            raise ValueError(
                f"{PREFIX}EVENT_QUEUE_SIZE, {PREFIX}EVENT_MAX_CONNECTIONS and "
                f"{PREFIX}EVENT_HEARTBEAT_SECONDS must be positive"
            )
        if not self.socket_recheck_seconds > 0 or not self.relay_url_ttl_seconds > 0:
            raise ValueError(f"{PREFIX}SOCKET_RECHECK_SECONDS and {PREFIX}RELAY_URL_TTL_SECONDS must be positive")
        if self.chat_max_connections < 1 or self.chat_max_connections_per_tenant < 1:
            raise ValueError(
                f"{PREFIX}CHAT_MAX_CONNECTIONS and {PREFIX}CHAT_MAX_CONNECTIONS_PER_TENANT must be positive"
            )
        if not 10 <= self.audio_input_frame_ms <= 200 or self.audio_input_frame_ms % 10:
            raise ValueError(f"{PREFIX}AUDIO_INPUT_FRAME_MS must be a multiple of 10 between 10 and 200")
        if self.vad_engine not in VAD_ENGINES:
            raise ValueError(f"{PREFIX}VAD_ENGINE must be one of {', '.join(VAD_ENGINES)}, not {self.vad_engine!r}")
        if self.turn_detection not in TURN_DETECTION_MODES:
            raise ValueError(
                f"{PREFIX}TURN_DETECTION must be one of {', '.join(TURN_DETECTION_MODES)}, not {self.turn_detection!r}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``VOXARENA_*`` variables; explicit overrides (CLI flags) win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None and "alias" in f.metadata:  # an older name still read
                raw = env.get(PREFIX + f.metadata["alias"])
            if raw is None:
                continue
            values[f.name] = _coerce(f.name, f.default, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "voxarena.db"

    @property
    def database_target(self) -> Path | str:
        """What ``Store`` opens: the PostgreSQL URL when one is set, else the SQLite file in the data dir."""
        return self.database_url or self.database_path

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


# S3 bucket names (AWS's rules, which S3-compatible stores follow): 3-63 lowercase letters, digits, dots, hyphens
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_PART = re.compile(r"^[A-Za-z0-9!_.*'()-]+$")
_HTTP_URL = re.compile(r"^https?://[^/?#\s]+(/[^?#\s]*)?$")


def s3_location(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` as (bucket, prefix without slashes at its ends); ValueError naming what is wrong."""
    name = f"{PREFIX}RECORDINGS_URL"
    if not url.startswith("s3://"):
        raise ValueError(f"{name} must be s3://BUCKET/PREFIX (empty: the data dir), not {url!r}")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ValueError(f"{name}: {bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, '.', '-')")
    prefix = prefix.strip("/")
    if prefix and not all(_PREFIX_PART.match(part) for part in prefix.split("/")):
        raise ValueError(f"{name}: the prefix {prefix!r} must be path parts of letters, digits and !_.*'()-")
    return bucket, prefix


def _coerce(name: str, default: Any, raw: str) -> Any:
    try:
        if isinstance(default, bool):
            return _bool(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            return _split(raw)
        if isinstance(default, Path):
            return Path(raw)
        return raw
    except ValueError as e:
        raise ValueError(f"{PREFIX}{name.upper()}: {e}") from None


SETTINGS = tuple(f for f in fields(Settings))
