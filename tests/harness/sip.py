"""SIP side of the harness: Redis, livekit-sip, sipp callees and an RTP packet counter, all inside the test netns.

    redis = start_redis(workdir=...)                                   # RedisServer(.address)
    server = start_livekit_server(redis_address=redis.address)         # SIP needs Redis on the server too
    sip = start_livekit_sip(server, redis, workdir=...)                # LiveKitSip(.sip_port, .rtp_range)
    callee = SippFactory(ip, tmpdir).callee("answer_speech")           # SippCallee(.address, .rtp_ports)
    with RtpSniffer(ip, callee.rtp_ports) as rtp: ...                  # rtp.to_ports / rtp.from_ports counters

sipp's `rtp_stream` has no receive statistics, so received RTP is counted with RtpSniffer: an AF_PACKET socket
on `lo` (every packet between two local addresses of the netns crosses `lo`, whatever interface holds them).
It decodes PCMU payloads, so a test can tell speech from silence, not just that packets arrived.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .audio import SILENCE_DBFS, dbfs, speech_ulaw_wav, ulaw_decode
from .livekit_server import LiveKitServer, require_binary
from .netns import require_test_netns
from .procs import HarnessError, ManagedProcess, free_port, free_port_range, free_tcp_udp_port

SIPP_DIR = Path(__file__).resolve().parent.parent / "sipp"
READY_TIMEOUT_S = 30.0


# --- Redis ----------------------------------------------------------------------------------------------------

def _redis_ping(ip: str, port: int) -> bool:
    with socket.create_connection((ip, port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")


@dataclass
class RedisServer:
    ip: str
    port: int
    log_path: Path
    process: ManagedProcess = field(repr=False)

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        return self.process.tail(lines)

    def stop(self) -> int | None:
        return self.process.stop()


def start_redis(*, workdir: Path | None = None, ready_timeout: float = 15.0) -> RedisServer:
    """redis-server bound to the netns IP on a free port, no RDB/AOF persistence."""
    ip = require_test_netns()
    exe = shutil.which("redis-server")
    if not exe:
        raise HarnessError("redis-server is not installed; run .ci/install-system.sh")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="voxarena-redis-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port(ip)
    log_path = workdir / "redis.log"
    argv = [exe, "--bind", ip, "--port", str(port), "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--dir", str(workdir), "--logfile", "", "--protected-mode", "no"]
    proc = ManagedProcess("redis-server", argv, log_path)
    try:
        proc.wait_until(lambda: _redis_ping(ip, port), timeout=ready_timeout, what="answering PING")
    except BaseException:
        proc.stop()
        raise
    return RedisServer(ip=ip, port=port, log_path=log_path, process=proc)


# --- livekit-sip ----------------------------------------------------------------------------------------------

@dataclass
class LiveKitSip:
    ip: str
    sip_port: int
    rtp_range: tuple[int, int]
    health_port: int
    log_path: Path
    config_path: Path
    server: LiveKitServer
    process: ManagedProcess = field(repr=False)

    @property
    def health_url(self) -> str:
        return f"http://{self.ip}:{self.health_port}/"

    def log_tail(self, lines: int = 80) -> str:
        return self.process.tail(lines)

    def stop(self) -> int | None:
        return self.process.stop()


def start_livekit_sip(server: LiveKitServer, redis: RedisServer, *, workdir: Path | None = None,
                      rtp_ports: int = 100, ready_timeout: float = READY_TIMEOUT_S) -> LiveKitSip:
    """livekit-sip on the netns IP, talking to `server` over psrpc through `redis`. Ready when its health
    port answers 200."""
    ip = require_test_netns()
    binary = require_binary("livekit-sip", "sip")
    if server.redis_address != redis.address:
        raise HarnessError("livekit-sip needs the livekit-server that uses the same Redis (start it with "
                           f"redis_address={redis.address!r})")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="voxarena-sip-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sip_port = free_tcp_udp_port(ip)
    health_port = free_port(ip)
    rtp_first, rtp_last = free_port_range(ip, rtp_ports)
    config = {
        "api_key": server.api_key,
        "api_secret": server.api_secret,
        "ws_url": server.url,
        "redis": {"address": redis.address},
        "sip_port": sip_port,
        "listen_ip": ip,
        "nat_1_to_1_ip": ip,  # without it livekit-sip would look for (and advertise) another interface
        "use_external_ip": False,  # true would ask public STUN servers
        "rtp_port": f"{rtp_first}-{rtp_last}",
        "max_cpu_utilization": 1.0,  # on 2 cores the default 0.9 refuses calls under test load
        "health_port": health_port,
        "logging": {"level": "debug"},
    }
    config_path = workdir / "sip.yaml"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = workdir / "livekit-sip.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "SIP_"))}
    proc = ManagedProcess("livekit-sip", [str(binary), "--config", str(config_path)], log_path, env=env)

    def healthy() -> bool:
        with urllib.request.urlopen(f"http://{ip}:{health_port}/", timeout=2) as r:  # noqa: S310
            return r.status == 200

    try:
        proc.wait_until(healthy, timeout=ready_timeout, what="healthy (GET health_port/ == 200)")
    except BaseException:
        proc.stop()
        raise
    return LiveKitSip(ip=ip, sip_port=sip_port, rtp_range=(rtp_first, rtp_last), health_port=health_port,
                      log_path=log_path, config_path=config_path, server=server, process=proc)


# --- sipp -----------------------------------------------------------------------------------------------------

SCENARIOS = ("answer_speech", "busy_486", "decline_603", "no_answer")


@dataclass
class SippRun:
    """One sipp process (callee or test caller). `messages()` reads its SIP message trace."""

    name: str
    ip: str
    port: int
    rtp_ports: tuple[int, int]
    workdir: Path
    process: ManagedProcess = field(repr=False)

    @property
    def address(self) -> str:
        """host:port to put in an outbound trunk."""
        return f"{self.ip}:{self.port}"

    @property
    def message_file(self) -> Path:
        return self.workdir / f"{self.name}.msg.log"

    @property
    def error_file(self) -> Path:
        return self.workdir / f"{self.name}.err.log"

    def messages(self) -> str:
        try:
            return self.message_file.read_text(errors="replace")
        except OSError:
            return ""

    def sent_status_codes(self) -> list[int]:
        """Status codes of the SIP responses this sipp sent, in order (from its -trace_msg file)."""
        return [int(m) for m in re.findall(r"UDP message sent.*?\n\s*SIP/2\.0 (\d{3})", self.messages(), re.S)]

    def received_status_codes(self) -> list[int]:
        return [int(m) for m in re.findall(r"UDP message received.*?\n\s*SIP/2\.0 (\d{3})", self.messages(), re.S)]

    def received_requests(self) -> list[str]:
        return re.findall(r"UDP message received.*?\n\s*([A-Z]+) sip:", self.messages(), re.S)

    def wait(self, timeout: float) -> int | None:
        """Exit code (0: every call succeeded, 1: a call failed, 99: no call), or None if still running."""
        return self.process.wait_exit(timeout)

    def describe(self, lines: int = 60) -> str:
        err = ""
        try:
            err = self.error_file.read_text(errors="replace")[-3000:]
        except OSError:
            pass
        msgs = self.messages()[-6000:]
        return (f"--- sipp {self.name} {' '.join(self.process.argv)} (rc={self.process.proc.poll()})\n"
                f"{self.process.tail(lines)}\n--- errors ---\n{err}\n--- messages (tail) ---\n{msgs}")

    def stop(self) -> int | None:
        return self.process.stop(timeout=3)


class SippFactory:
    """Starts sipp processes on free ports inside the netns and stops them all at the end."""

    def __init__(self, ip: str, workdir: Path) -> None:
        self.ip = ip
        self.workdir = Path(workdir)
        self.runs: list[SippRun] = []
        self._exe = shutil.which("sipp")
        if not self._exe:
            raise HarnessError("sipp is not installed (Debian package sip-tester); run .ci/install-system.sh")

    def _start(self, name: str, scenario_args: list[str], *, extra: list[str], rtp_count: int = 10,
               timeout_s: float = 60.0, port: int | None = None) -> SippRun:
        d = self.workdir / f"sipp-{name}-{len(self.runs)}"
        d.mkdir(parents=True, exist_ok=True)
        port = port or free_tcp_udp_port(self.ip)
        rtp_first, rtp_last = free_port_range(self.ip, rtp_count)
        run_name = f"{name}"
        argv = [self._exe, *scenario_args,
                "-i", self.ip, "-p", str(port), "-mi", self.ip,
                "-min_rtp_port", str(rtp_first), "-max_rtp_port", str(rtp_last),
                "-m", "1", "-timeout", f"{int(timeout_s)}s", "-timeout_error", "-nostdin",
                "-trace_msg", "-message_file", str(d / f"{run_name}.msg.log"),
                "-trace_err", "-error_file", str(d / f"{run_name}.err.log"),
                *extra]
        proc = ManagedProcess(f"sipp {name}", argv, d / f"{run_name}.out.log", cwd=d)
        run = SippRun(name=run_name, ip=self.ip, port=port, rtp_ports=(rtp_first, rtp_last), workdir=d,
                      process=proc)
        self.runs.append(run)
        # sipp has no readiness signal; its UDP socket is bound before it parses the scenario's first recv.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.alive() and not _udp_port_taken(self.ip, port):
            time.sleep(0.05)
        if not proc.alive():
            raise proc.fail("sipp exited at start")
        return run

    def callee(self, scenario: str, *, ring_ms: int = 300, speech_text: str | None = None,
               timeout_s: float = 60.0) -> SippRun:
        """sipp as the called party (UAS) with tests/sipp/<scenario>.xml.

        ring_ms: how long 180 Ringing lasts before the final answer (sipp -d). answer_speech streams an
        8 kHz u-law rendering of `speech_text` in a loop after the ACK (the file is `speech.wav` in sipp's cwd).
        """
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; have {SCENARIOS}")
        sf = SIPP_DIR / f"{scenario}.xml"
        run = self._prepare_speech(speech_text)
        return self._start(scenario, ["-sf", str(sf)], extra=["-d", str(ring_ms)], timeout_s=timeout_s,
                           **run)

    def _prepare_speech(self, speech_text: str | None) -> dict:
        return {}

    def caller(self, target: str, *, scenario: str | None = None, service: str = "15550000002",
               hold_ms: int = 3000, rtp_echo: bool = True, timeout_s: float = 30.0) -> SippRun:
        """A sipp caller (UAC) for testing the callee scenarios without livekit-sip. Default scenario is
        sipp's built-in `uac`; with rtp_echo it bounces the callee's RTP back to it."""
        args = ["-sf", str(SIPP_DIR / f"{scenario}.xml")] if scenario else ["-sn", "uac"]
        extra = ["-s", service, "-d", str(hold_ms)]
        if rtp_echo:
            mp = free_port_range(self.ip, 4)[0]
            extra += ["-mp", str(mp), "-rtp_echo"]
        extra.append(target)
        run = self._start(f"caller-{scenario or 'uac'}", args, extra=extra, timeout_s=timeout_s)
        if rtp_echo:
            run.rtp_ports = (mp, mp + 1)
        return run

    def describe(self) -> str:
        return "\n".join(r.describe() for r in self.runs) or "<no sipp runs>"

    def stop_all(self) -> None:
        for r in self.runs:
            r.stop()


def _udp_port_taken(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, port))
        except OSError:
            return True
    return False


# --- RTP counter ----------------------------------------------------------------------------------------------

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


@dataclass
class RtpCounter:
    packets: int = 0
    bytes: int = 0
    speech_packets: int = 0  # PCMU payloads above SILENCE_DBFS
    payload_types: set[int] = field(default_factory=set)
    sources: set[tuple[str, int]] = field(default_factory=set)
    first_at: float | None = None
    last_at: float | None = None
    first_speech_at: float | None = None


class RtpSniffer:
    """Counts RTP (UDP) packets to and from a port range on `ip`, by reading `lo` with an AF_PACKET socket.

    `to_ports`: packets whose destination is ip:port in the range (what the endpoint there received),
    `from_ports`: packets it sent. Use as a context manager; needs root (CAP_NET_RAW), which netns-run has.
    """

    def __init__(self, ip: str, ports: tuple[int, int], *, interface: str = "lo") -> None:
        self.ip = ip
        self._ip_bytes = socket.inet_aton(ip)
        self.ports = ports
        self.interface = interface
        self.to_ports = RtpCounter()
        self.from_ports = RtpCounter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> RtpSniffer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((self.interface, 0))
        s.settimeout(0.2)
        self._sock = s
        self._thread = threading.Thread(target=self._run, name="rtp-sniffer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
        if self._sock is not None:
            self._sock.close()

    def snapshot(self) -> tuple[RtpCounter, RtpCounter]:
        import copy

        with self._lock:
            return copy.deepcopy(self.to_ports), copy.deepcopy(self.from_ports)

    def _run(self) -> None:
        assert self._sock is not None
        lo, hi = self.ports
        while not self._stop.is_set():
            try:
                frame, addr = self._sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING:  # lo shows each packet twice: outgoing and incoming
                continue
            # loopback frames carry a zeroed 14-byte Ethernet header
            if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
                continue
            ip_hdr = frame[14:]
            ihl = (ip_hdr[0] & 0x0F) * 4
            if ip_hdr[9] != 17:  # UDP
                continue
            src, dst = ip_hdr[12:16], ip_hdr[16:20]
            udp = ip_hdr[ihl:]
            sport, dport, ulen = struct.unpack("!HHH", udp[:6])
            payload = udp[8:ulen]
            if dst == self._ip_bytes and lo <= dport <= hi:
                self._count(self.to_ports, payload, (socket.inet_ntoa(src), sport))
            elif src == self._ip_bytes and lo <= sport <= hi:
                self._count(self.from_ports, payload, (socket.inet_ntoa(dst), dport))

    def _count(self, c: RtpCounter, payload: bytes, peer: tuple[str, int]) -> None:
        if len(payload) < 12 or payload[0] >> 6 != 2:  # not RTP v2 (e.g. RTCP goes to port+1 anyway)
            return
        pt = payload[1] & 0x7F
        if 72 <= pt <= 76:  # RTCP packet types 200-204 with the marker bit
            return
        now = time.monotonic()
        cc = payload[0] & 0x0F
        body = payload[12 + 4 * cc:]
        speech = pt == 0 and len(body) > 0 and dbfs(ulaw_decode(body)) > SILENCE_DBFS
        with self._lock:
            c.packets += 1
            c.bytes += len(payload)
            c.payload_types.add(pt)
            c.sources.add(peer)
            c.first_at = c.first_at or now
            c.last_at = now
            if speech:
                c.speech_packets += 1
                c.first_speech_at = c.first_speech_at or now


def wait_for_rtp(counter_getter, *, packets: int, timeout: float, speech: bool = False) -> None:
    """Poll a zero-argument callable returning an RtpCounter until it has `packets` (speech) packets."""
    deadline = time.monotonic() + timeout
    while True:
        c = counter_getter()
        n = c.speech_packets if speech else c.packets
        if n >= packets:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"only {n} {'speech ' if speech else ''}RTP packets after {timeout}s "
                               f"(wanted {packets}); counter={c}")
        time.sleep(0.1)
