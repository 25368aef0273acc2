"""The SIP tier: Redis + livekit-server + livekit-sip inside the test netns, and a sipp callee with an RTP peer.

Topology (all inside the `.ci/netns-run` namespace):

    livekit-api ──twirp──▶ livekit-server (IP:port, --redis-host) ◀──psrpc── redis 127.0.0.1 ──psrpc──▶ livekit-sip
                              ▲ WebRTC (host candidates on IP; no TURN needed: IP is not loopback)     │ SIP IP:sip_port
                              └──────────────────────────────────────────────────────────────────── ─┘ RTP *:range
    sipp UAS on PEER_IP:port (signalling only) ◀── INVITE/BYE/CANCEL ── livekit-sip
    RtpPeer on PEER_IP:rtp_port (the port sipp's 200 OK advertises) ◀── RTP PCMU ──▶ livekit-sip

Why the media is not sipp's own: sipp can stream a file (`rtp_stream`) or echo (`-rtp_echo`), but it cannot tell
a test what it received. The RtpPeer owns the advertised media port instead: it decodes every PCMU packet it gets
(so a test can assert "the callee heard non-silent audio") and plays speech back from the same socket to where
livekit-sip sends from (symmetric RTP), or to the address in livekit-sip's SDP offer. sipp's exit status and its
message log tell which SIP messages it received (e.g. the scenario `uas_answer.xml` only succeeds on a BYE).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .livekit_server import LiveKitServer, require_binary, start_livekit_server
from .netns import require_test_netns
from .procs import HarnessError, ManagedProcess, free_port, free_port_range, free_tcp_udp_port, sipp_ports
from .redis_server import RedisServer, start_redis
from .rtp import RtpPeer, RtpStats

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "sip"
TRUNK_NUMBER = "+15550000"  # the trunk's own number (the caller ID livekit-sip sends)
CALLEE_NUMBER = "+15550100"  # what tests dial (sip_call_to); sipp answers any number


def require_sipp() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise HarnessError("sipp is not installed (Debian package sip-tester); run .ci/install-system.sh")
    return path


def _udp_inodes(ip: str, port: int) -> set[int]:
    """The inodes of the UDP sockets bound to ip:port (or to 0.0.0.0:port, which holds it too) here. Read from
    /proc/net/udp rather than probed with a bind, which would hold the port for a moment and could make the process
    we are waiting for fail to bind it."""
    wanted = {f"{socket.inet_aton(a)[::-1].hex().upper()}:{port:04X}" for a in (ip, "0.0.0.0")}
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return set()
    return {int(f[9]) for f in (line.split() for line in lines) if len(f) > 9 and f[1] in wanted}


def _udp_bound(ip: str, port: int) -> bool:
    """True if a UDP socket is bound to ip:port here."""
    return bool(_udp_inodes(ip, port))


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(fd.path)
                if link.startswith("socket:["):
                    inodes.add(int(link[8:-1]))
    return inodes


def _udp_holders(ip: str, port: int) -> list[str]:
    """Who holds ip:port/udp: each process with one of its sockets, as "pid command line"."""
    inodes = _udp_inodes(ip, port)
    holders = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _socket_inodes(int(entry.name)) & inodes:
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                holders.append(f"{entry.name} {cmd.strip()[:200]}")
    return holders


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


async def eventually(check, *, timeout: float, what: str, interval: float = 0.05):
    """Await until `check()` returns something truthy (and return it), without blocking the event loop; raise
    HarnessError on the deadline. For conditions on the RtpPeer/SippCallee from async tests."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise HarnessError(f"not {what} within {timeout:.1f}s")
        await asyncio.sleep(interval)


# --- livekit-sip --------------------------------------------------------------------------------------------------


@dataclass
class LiveKitSip:
    """A running livekit-sip bridge. SIP signalling on `ip:sip_port` (UDP and TCP), RTP on `rtp_range` (wildcard)."""

    ip: str
    sip_port: int
    rtp_range: tuple[int, int]
    health_port: int
    config_path: Path
    log_path: Path
    process: ManagedProcess = field(repr=False)

    def log_tail(self, lines: int = 80) -> str:
        """The last `lines` of its log without pion's WebRTC transport lines (debug level: every SCTP chunk, which
        otherwise fill a failed test's report and hide the SIP signalling)."""
        kept = [line for line in self.log_text().splitlines() if "\tsip.pion." not in line]
        return "\n".join(kept[-lines:])

    def log_text(self) -> str:
        self.process.tail(1)  # flushes
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        return self.process.stop()


def start_livekit_sip(
    server: LiveKitServer, redis: RedisServer, workdir: Path, *, ready_timeout: float = 30.0
) -> LiveKitSip:
    """Start livekit-sip against `server` (which must use the same Redis) and wait until it serves calls.

    Ready means: health endpoint 200, SIP UDP port bound, and the log line saying the CreateSIPParticipant RPC
    topic is registered (before that, CreateSIPParticipant fails with "no response from servers")."""
    ip = require_test_netns()
    binary = require_binary("livekit-sip", "sip")
    workdir.mkdir(parents=True, exist_ok=True)
    sip_port = free_tcp_udp_port(ip)
    health_port = free_port(ip)
    rtp_lo, rtp_hi = free_port_range("0.0.0.0", 100, lo=20000, hi=32600)  # below the ephemeral range
    config = {
        "api_key": server.api_key,
        "api_secret": server.api_secret,
        "ws_url": server.url,
        "redis": {"address": f"127.0.0.1:{redis.port}"},
        "sip_port": sip_port,
        "listen_ip": ip,
        # Without it livekit-sip picks "a" local address for SIP Contact/SDP; with it, the one it listens on.
        "nat_1_to_1_ip": ip,
        "use_external_ip": False,
        "rtp_port": f"{rtp_lo}-{rtp_hi}",
        "health_port": health_port,
        # The default 0.9 refuses calls (ErrUnavailable) when less than 0.2 of 2 shared cores is idle.
        "max_cpu_utilization": 1.0,
        "logging": {"level": "debug"},
    }
    config_path = workdir / "sip.yaml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    log_path = workdir / "livekit-sip.log"
    proc = ManagedProcess("livekit-sip", [str(binary), "--config", str(config_path)], log_path)
    bridge = LiveKitSip(
        ip=ip,
        sip_port=sip_port,
        rtp_range=(rtp_lo, rtp_hi),
        health_port=health_port,
        config_path=config_path,
        log_path=log_path,
        process=proc,
    )

    def ready() -> bool:
        return (
            _http_status(f"http://{ip}:{health_port}/") == 200
            and _udp_bound(ip, sip_port)
            and READY_LOG_LINE in bridge.log_text()
        )

    try:
        proc.wait_until(ready, timeout=ready_timeout, what="ready (health 200, SIP port bound, RPC registered)")
    except BaseException:
        proc.stop()
        raise
    return bridge


READY_LOG_LINE = "service ready"


# --- sipp callee --------------------------------------------------------------------------------------------------

# sipp's -trace_msg separator line carries the time the message was sent or received, in local time
_MSG_SPLIT = re.compile(r"^-{20,}[ \t]*(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)?.*$", re.M)


@dataclass
class SipMessage:
    direction: str  # "received" or "sent"
    first_line: str
    text: str
    at: float | None = None  # when sipp logged it (time.time() seconds)

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive; compact forms are not expanded)."""
        for line in self.text.splitlines():
            key, sep, value = line.strip().partition(":")
            if sep and key.strip().lower() == name.lower():
                return value.strip()
        return None


@dataclass
class SipDialog:
    """One INVITE transaction a multi-call sipp callee took (`SippCallee.dialogs()`), by its Call-ID."""

    call_id: str
    number: str  # the user part of the INVITE's request URI: the number dialled
    invited_at: float  # the first INVITE received (time.time() seconds)
    final_status: int | None = None  # the final response sipp sent to the INVITE (200, 486, 487, ...)
    ended_at: float | None = None  # the failure response sent, or the BYE (sent or received): the line is free

    @property
    def answered(self) -> bool:
        return self.final_status == 200


def max_concurrent(dialogs: list[SipDialog], *, now: float | None = None) -> int:
    """The most dialogs open at one instant (a dialog not yet ended counts as open until `now`)."""
    end = now if now is not None else time.time()
    edges = sorted(
        [(d.invited_at, 1) for d in dialogs] + [(d.ended_at if d.ended_at is not None else end, -1) for d in dialogs],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


class SippCallee:
    """One sipp UAS process running one scenario for one call (`-m 1`), plus its RtpPeer.

    sipp exits by itself when the scenario ends: 0 when the call went through every step (for uas_answer.xml
    that includes receiving the BYE), 1 when a step failed (unexpected message, timeout).

    `calls=None` serves any number of calls at once until it is stopped (`dialogs()` tells them apart); their media
    is then sipp's own: `stream` is copied into sipp's working directory as `stream.wav` for a scenario's
    `<exec rtp_stream="stream.wav,..."/>` (one stream per call, from sipp's `-mp` port to the caller's SDP
    address), since the single RtpPeer can talk to one call only."""

    STREAM_NAME = "stream.wav"

    def __init__(
        self,
        scenario: str,
        *,
        ip: str,
        port: int,
        workdir: Path,
        answer_after_ms: int = 500,
        play: Path | None = None,
        timeout_s: float = 60.0,
        calls: int | None = 1,
        stream: Path | None = None,
    ) -> None:
        sipp = require_sipp()
        path = Path(scenario) if os.sep in scenario else SCENARIO_DIR / scenario
        if not path.is_file():
            raise HarnessError(f"no sipp scenario {path}")
        self.scenario = path
        self.ip, self.port = ip, port
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.rtp = RtpPeer(ip, play=play)
        self.messages_path = workdir / "messages.log"
        self.errors_path = workdir / "errors.log"
        self.screen_path = workdir / "screen.log"
        if stream is not None:
            shutil.copyfile(stream, workdir / self.STREAM_NAME)
        media_port, control_port = sipp_ports(ip, port)
        argv = [
            sipp,
            "-sf",
            str(path),
            "-i",
            ip,
            "-p",
            str(port),
            "-mi",
            ip,
            "-mp",
            str(media_port),
            "-cp",
            str(control_port),
            "-key",
            "rtp_port",
            str(self.rtp.port),
            "-d",
            str(answer_after_ms),
            *(["-m", str(calls)] if calls is not None else []),
            "-timeout",
            f"{int(timeout_s)}s",
            "-timeout_error",
            "-nostdin",
            "-trace_msg",
            "-message_file",
            str(self.messages_path),
            "-trace_err",
            "-error_file",
            str(self.errors_path),
            "-trace_screen",
            "-screen_file",
            str(self.screen_path),
        ]
        try:
            self._start(argv, ip, port)
        except BaseException:
            self.rtp.close()
            if hasattr(self, "process"):
                self.process.stop()
            raise

    def _start(self, argv: list[str], ip: str, port: int, *, attempts: int = 3, free_within: float = 10.0) -> None:
        """Start sipp and wait until the socket on ip:port is its own (another process's socket there would make a
        plain "something is bound" check pass while sipp exits with "Unable to bind main socket"). When the port
        is taken, say by whom, wait for it to be free and try again."""
        for attempt in range(1, attempts + 1):
            self.process = ManagedProcess(
                f"sipp[{self.scenario.name}]", argv, self.workdir / "sipp.stdout.log", cwd=self.workdir
            )
            try:
                self.process.wait_until(
                    lambda: bool(_udp_inodes(ip, port) & _socket_inodes(self.process.proc.pid)),
                    timeout=10,
                    what=f"listening on {ip}:{port}/udp",
                )
                return
            except HarnessError as e:
                holders = _udp_holders(ip, port)
                self.process.stop()
                if not holders or attempt == attempts:
                    raise HarnessError(f"{e}\n--- holding {ip}:{port}/udp: {holders or 'nobody'}") from None
                print(f"sipp: {ip}:{port}/udp is held by {holders}; waiting for it (attempt {attempt} of {attempts})")
                deadline = time.monotonic() + free_within
                while _udp_bound(ip, port) and time.monotonic() < deadline:
                    time.sleep(0.1)

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def messages(self) -> list[SipMessage]:
        """The SIP messages sipp logged so far (-trace_msg), in order."""
        try:
            text = self.messages_path.read_text(errors="replace")
        except OSError:
            return []
        out: list[SipMessage] = []
        parts = _MSG_SPLIT.split(text)  # [before, stamp, block, stamp, block, ...]
        for stamp, block in zip(parts[1::2], parts[2::2], strict=True):
            head, _, body = block.strip().partition("\n")
            m = re.search(r"message (received|sent)", head)
            if not m:
                continue
            lines = [ln for ln in body.strip().splitlines() if ln.strip()]
            at = datetime.fromisoformat(stamp).timestamp() if stamp else None  # naive: local time, as sipp logs
            out.append(SipMessage(m.group(1), lines[0].strip() if lines else "", body, at))
        return out

    def dialogs(self) -> list[SipDialog]:
        """Every call sipp took so far, by Call-ID, in the order the INVITEs arrived (retransmissions are one call):
        for a callee serving many calls (`calls=None`), the ground truth of what was dialled and when the line was
        busy."""
        by_id: dict[str, SipDialog] = {}
        for m in self.messages():
            call_id = m.header("Call-ID") or m.header("i")
            if call_id is None or m.at is None:
                continue
            d = by_id.get(call_id)
            if m.direction == "received" and m.first_line.startswith("INVITE ") and d is None:
                uri = m.first_line.split()[1]
                number = uri.split(":", 1)[1].split("@", 1)[0] if ":" in uri else uri
                by_id[call_id] = SipDialog(call_id, number, m.at)
                continue
            if d is None:
                continue
            cseq = (m.header("CSeq") or "").upper()
            if m.direction == "sent" and m.first_line.startswith("SIP/2.0 ") and cseq.endswith("INVITE"):
                code = int(m.first_line.split()[1])
                if code >= 200 and d.final_status is None:
                    d.final_status = code
                    if code >= 300:
                        d.ended_at = m.at
            elif m.first_line.startswith("BYE ") and d.ended_at is None:
                d.ended_at = m.at
        return sorted(by_id.values(), key=lambda d: d.invited_at)

    def received(self, method_or_status: str) -> bool:
        """Did sipp receive a request `method` (e.g. "BYE", "CANCEL") or a response with this status ("200")?"""
        return any(self._matches(m, method_or_status) for m in self.messages() if m.direction == "received")

    def sent(self, method_or_status: str) -> bool:
        return any(self._matches(m, method_or_status) for m in self.messages() if m.direction == "sent")

    @staticmethod
    def _matches(m: SipMessage, what: str) -> bool:
        if what.isdigit():
            return m.first_line.startswith(f"SIP/2.0 {what} ")
        return m.first_line.startswith(f"{what} ")

    def wait_received(self, method_or_status: str, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.received(method_or_status):
            if time.monotonic() >= deadline:
                raise HarnessError(
                    f"sipp ({self.scenario.name}) did not receive {method_or_status} within "
                    f"{timeout:.0f}s\n{self.describe()}"
                )
            time.sleep(0.1)

    def wait_exit(self, *, timeout: float) -> int:
        """sipp's exit code once the scenario ended (0 = every step done); raise if it is still running."""
        rc = self.process.wait_exit(timeout)
        if rc is None:
            raise HarnessError(f"sipp ({self.scenario.name}) still running after {timeout:.0f}s\n{self.describe()}")
        return rc

    def describe(self) -> str:
        flow = "\n".join(f"  {m.direction:8} {m.first_line}" for m in self.messages())
        errors = self.errors_path.read_text(errors="replace")[-3000:] if self.errors_path.exists() else ""
        rc = self.process.proc.poll()
        return (
            f"sipp {self.scenario.name} on {self.address} ({'running' if rc is None else f'rc={rc}'})\n"
            f"SIP flow:\n{flow or '  <none>'}\nRTP peer: {self.rtp.snapshot()}\n"
            f"errors:\n{errors or '  <none>'}"
        )

    def stop(self) -> int | None:
        rc = self.process.stop(timeout=5)
        self.rtp.close()
        return rc


# --- the whole stack ----------------------------------------------------------------------------------------------


async def create_outbound_trunk(
    server: LiveKitServer, address: str, *, name: str = "sipp-callee", numbers: list[str] | None = None
) -> str:
    """CreateSIPOutboundTrunk to `address` ("ip:port") over UDP; returns the trunk id (ST_...)."""
    from livekit import api

    async with server.api() as lk:
        trunk = await lk.sip.create_outbound_trunk(
            api.CreateSIPOutboundTrunkRequest(
                trunk=api.SIPOutboundTrunkInfo(
                    name=name,
                    address=address,
                    numbers=numbers or [TRUNK_NUMBER],
                    transport=api.SIPTransport.SIP_TRANSPORT_UDP,
                )
            )
        )
    return trunk.sip_trunk_id


@dataclass
class SipStack:
    """Redis + livekit-server (with Redis) + livekit-sip + an outbound trunk to `callee_address`.

    sipp callees all listen on `callee_address` (the trunk's address), so only one runs at a time (one sipp may
    serve many calls at once: `start_callee(..., calls=None)`)."""

    redis: RedisServer
    livekit: LiveKitServer
    sip: LiveKitSip
    callee_ip: str
    callee_port: int
    trunk_id: str
    workdir: Path
    _callee: SippCallee | None = field(default=None, repr=False)
    _count: int = field(default=0, repr=False)
    _peers: list[SippCallee] = field(default_factory=list, repr=False)

    @property
    def url(self) -> str:
        return self.livekit.url

    @property
    def api_key(self) -> str:
        return self.livekit.api_key

    @property
    def api_secret(self) -> str:
        return self.livekit.api_secret

    @property
    def callee_address(self) -> str:
        return f"{self.callee_ip}:{self.callee_port}"

    def api(self):  # -> livekit.api.LiveKitAPI
        return self.livekit.api()

    def start_callee(
        self,
        scenario: str,
        *,
        answer_after_ms: int = 500,
        play: Path | None = None,
        timeout_s: float = 60.0,
        calls: int | None = 1,
        stream: Path | None = None,
    ) -> SippCallee:
        """Start sipp with `scenario` (a file name in tests/sip/ or a path) on the trunk's address.

        `answer_after_ms` is sipp's `-d`: ringing time before the answer/reject (or the call length in
        uas_answer_hangup.xml and uas_by_number.xml). `play`: an 8 kHz u-law WAV (audio.speech_ulaw_wav()) the
        callee streams in a loop. `calls`: how many calls before sipp exits (None: any number, at once; `stream`
        is then each call's speech, see SippCallee). A previous callee still running is stopped first."""
        self.stop_callee()
        self._count += 1
        self._callee = SippCallee(
            scenario,
            ip=self.callee_ip,
            port=self.callee_port,
            workdir=self.workdir / f"callee-{self._count}-{Path(scenario).stem}",
            answer_after_ms=answer_after_ms,
            play=play,
            timeout_s=timeout_s,
            calls=calls,
            stream=stream,
        )
        return self._callee

    def stop_callee(self) -> None:
        if self._callee is not None:
            self._callee.stop()
            self._callee = None

    def hang_up_all(self, *, timeout: float = 10.0) -> list[str]:
        """Close every room a SIP participant is still in (a test that failed, or ended before its call did), and
        wait up to `timeout` for the callee to get each line's BYE while it still runs. Every callee listens on the
        trunk's one address: a BYE arriving after its test would reach the next test's callee, which aborts on a
        call it does not know (a one-call sipp then exits failed: one failure would fail the tests after it).
        Returns the rooms closed."""
        from livekit import api

        async def close() -> list[str]:
            async with self.api() as lk:
                closed = []
                for room in (await lk.room.list_rooms(api.ListRoomsRequest())).rooms:
                    people = (await lk.room.list_participants(api.ListParticipantsRequest(room=room.name))).participants
                    if any(p.kind == api.ParticipantInfo.Kind.SIP for p in people):
                        await lk.room.delete_room(api.DeleteRoomRequest(room=room.name))
                        closed.append(room.name)
                return closed

        with ThreadPoolExecutor(1) as pool:  # its own loop, whether or not the caller runs one
            closed = pool.submit(asyncio.run, close()).result()
        callee = self._callee
        if closed and callee is not None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and callee.process.alive():
                if all(d.ended_at is not None for d in callee.dialogs()):
                    break
                time.sleep(0.1)
        return closed

    def start_peer(
        self,
        scenario: str,
        *,
        answer_after_ms: int = 500,
        play: Path | None = None,
        timeout_s: float = 60.0,
    ) -> SippCallee:
        """Another sipp UAS, on an address of its own (not the trunk's: the trunk's callee runs beside it), reached
        by a SIP URI, `sip:<user>@<peer.address>` (a warm transfer's human, for one). Stopped by `stop_peers`."""
        self._count += 1
        peer = SippCallee(
            scenario,
            ip=self.callee_ip,
            port=free_tcp_udp_port(self.callee_ip),
            workdir=self.workdir / f"peer-{self._count}-{Path(scenario).stem}",
            answer_after_ms=answer_after_ms,
            play=play,
            timeout_s=timeout_s,
        )
        self._peers.append(peer)
        return peer

    def stop_peers(self) -> None:
        while self._peers:
            self._peers.pop().stop()

    def describe(self) -> str:
        parts = [
            f"--- livekit-sip ---\n{self.sip.log_tail(60)}",
            f"--- livekit-server ---\n{self.livekit.log_tail(30)}",
        ]
        if self._callee is not None:
            parts.insert(0, f"--- callee ---\n{self._callee.describe()}")
        for peer in self._peers:
            parts.insert(1, f"--- peer ---\n{peer.describe()}")
        return "\n".join(parts)

    def stop(self) -> None:
        self.stop_peers()
        self.stop_callee()
        self.sip.stop()
        self.livekit.stop()
        self.redis.stop()


def start_sip_stack(workdir: Path) -> SipStack:
    """Start everything (checking first that every component is installed, so a missing one fails fast)."""
    ip = require_test_netns()
    require_binary("livekit-sip", "sip")
    require_binary("livekit-server", "server")
    require_sipp()
    if shutil.which("redis-server") is None:
        raise HarnessError("redis-server is not installed; run .ci/install-system.sh")
    callee_ip = os.environ.get("VOXARENA_TEST_PEER_IP") or ip
    started: list = []
    try:
        redis = start_redis(workdir / "redis")
        started.append(redis)
        livekit = start_livekit_server(workdir=workdir / "livekit", redis_address=f"127.0.0.1:{redis.port}")
        started.append(livekit)
        sip = start_livekit_sip(livekit, redis, workdir / "livekit-sip")
        started.append(sip)
        # outside the kernel's ephemeral range and the harness's RTP ranges (20000 and up): between tests no callee
        # holds it, and a socket bound to port 0 there (WebRTC's, a resolver's) must not take it from the next one
        callee_port = free_tcp_udp_port(callee_ip, lo=10000, hi=20000)
        trunk_id = asyncio.run(create_outbound_trunk(livekit, f"{callee_ip}:{callee_port}"))
    except BaseException:
        for p in reversed(started):
            p.stop()
        raise
    return SipStack(
        redis=redis,
        livekit=livekit,
        sip=sip,
        callee_ip=callee_ip,
        callee_port=callee_port,
        trunk_id=trunk_id,
        workdir=workdir,
    )


__all__ = [
    "CALLEE_NUMBER",
    "SCENARIO_DIR",
    "TRUNK_NUMBER",
    "LiveKitSip",
    "RtpPeer",
    "RtpStats",
    "SipDialog",
    "SipStack",
    "SippCallee",
    "create_outbound_trunk",
    "eventually",
    "max_concurrent",
    "require_sipp",
    "start_livekit_sip",
    "start_sip_stack",
]
