"""The sipp callee's media: a UDP socket that records the RTP (PCMU) livekit-sip sends and plays speech back.

sipp advertises this socket's port in its 200 OK (`-key rtp_port N`, `[rtp_port]` in tests/sip/*.xml) and does the
signalling only, because sipp's own media (`rtp_stream`, `-rtp_echo`) cannot tell a test what it received."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import SILENCE_DBFS, dbfs, ulaw_decode
from .procs import HarnessError

_RTP_HEADER = struct.Struct("!BBHII")
PCMU = 0
TELEPHONE_EVENT = 101  # RFC 4733 events (DTMF), as tests/sip/uas_answer_dtmf.xml offers them
DTMF_DIGITS = "0123456789*#ABCD"
DTMF_PACKETS = 10  # a key held 200 ms: 10 event packets of 20 ms, then 3 end packets


@dataclass
class RtpStats:
    """What the RtpPeer received. Levels are per packet, of the G.711 u-law decoded payload (dBFS)."""

    packets: int = 0
    pcmu_packets: int = 0
    nonsilent_packets: int = 0
    payload_types: set[int] = field(default_factory=set)
    first_at: float | None = None  # time.monotonic()
    last_at: float | None = None
    max_dbfs: float = -120.0
    remote: tuple[str, int] | None = None
    sent_packets: int = 0
    dtmf: str = ""  # the RFC 4733 digits received, one per event (an event repeats over several packets)
    last_nonsilent_at: float | None = None  # time.monotonic() of the last audible packet (the end of a voice)


class RtpPeer:
    """The callee's media: a UDP socket on `ip:port` that records incoming RTP and optionally plays a u-law WAV.

    Playback starts once the remote address is known (first packet received, symmetric RTP) and loops the file in
    20 ms packets, paced by the monotonic clock. `samples()` returns everything received, decoded to int16."""

    def __init__(self, ip: str, *, play: Path | None = None, silence_dbfs: float = SILENCE_DBFS) -> None:
        self.ip = ip
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.05)
        self.silence_dbfs = silence_dbfs
        self.stats = RtpStats()
        self._dtmf_timestamps: set[int] = set()
        self._payload = _read_ulaw_wav(play) if play else None
        self._chunks: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._dtmf_out: list[str] = []  # digits to send as RFC 4733 events, in place of the played audio
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rtp-peer-{self.port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seq, ts, ssrc = 0, 0, 0x5A5A0000 | (self.port & 0xFFFF)
        event: int | None = None  # the RFC 4733 event being sent (its code), its timestamp and packets so far
        event_ts = event_packets = 0
        pos, next_send = 0, 0.0
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                data = b""
            except OSError:
                return
            if len(data) >= 12:
                self._record(data, addr)
            remote = self.stats.remote
            if self._payload is None or remote is None:
                continue
            now = time.monotonic()
            if next_send == 0.0:
                next_send = now
            while next_send <= now:  # catch up after a slow recv without bursting more than a few packets
                if event is None and self._dtmf_out:
                    with self._lock:
                        event, event_ts, event_packets = DTMF_DIGITS.index(self._dtmf_out.pop(0)), ts, 0
                if event is not None:  # one 20 ms event packet in place of audio; the last 3 mark its end
                    event_packets += 1
                    end = event_packets > DTMF_PACKETS
                    marker = 0x80 if event_packets == 1 else 0
                    payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, 160 * min(event_packets, 10))
                    header = _RTP_HEADER.pack(0x80, marker | TELEPHONE_EVENT, seq & 0xFFFF, event_ts, ssrc)
                    with contextlib.suppress(OSError):
                        self.sock.sendto(header + payload, remote)
                    if event_packets >= DTMF_PACKETS + 3:
                        event = None
                    seq, ts = seq + 1, ts + 160
                    next_send += 0.020
                    continue
                chunk = self._payload[pos : pos + 160]
                if len(chunk) < 160:
                    pos, chunk = 0, self._payload[:160]
                pos += 160
                with contextlib.suppress(OSError):
                    self.sock.sendto(_RTP_HEADER.pack(0x80, PCMU, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + chunk, remote)
                seq, ts = seq + 1, ts + 160
                self.stats.sent_packets += 1
                next_send += 0.020
                if now - next_send > 0.2:
                    next_send = now

    def _record(self, data: bytes, addr: tuple[str, int]) -> None:
        b0, b1, _seq, ts, _ssrc = _RTP_HEADER.unpack_from(data)
        if b0 >> 6 != 2:
            return
        header = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10 and len(data) >= header + 4:  # extension
            header += 4 + 4 * struct.unpack_from("!H", data, header + 2)[0]
        payload = data[header:]
        if b0 & 0x20 and payload:  # padding
            payload = payload[: -payload[-1]]
        pt = b1 & 0x7F
        now = time.monotonic()
        with self._lock:
            st = self.stats
            st.packets += 1
            st.payload_types.add(pt)
            st.first_at = st.first_at or now
            st.last_at = now
            if st.remote is None:
                st.remote = addr
            # a new event (its packets share one RTP timestamp)
            if (
                pt == TELEPHONE_EVENT
                and len(payload) >= 4
                and payload[0] < len(DTMF_DIGITS)
                and ts not in self._dtmf_timestamps
            ):
                self._dtmf_timestamps.add(ts)
                st.dtmf += DTMF_DIGITS[payload[0]]
            if pt == PCMU and payload:
                samples = ulaw_decode(payload)
                self._chunks.append(samples)
                st.pcmu_packets += 1
                level = dbfs(samples)
                st.max_dbfs = max(st.max_dbfs, level)
                if level > self.silence_dbfs:
                    st.nonsilent_packets += 1
                    st.last_nonsilent_at = now

    def send_dtmf(self, digit: str) -> None:
        """Press a key: an RFC 4733 event (PT 101, 200 ms, as uas_answer_dtmf.xml negotiates) sent in place of
        the played audio, once the call's media flows (the peer must be playing: `play`)."""
        if self._payload is None:
            raise HarnessError("the RTP peer sends DTMF while it plays audio: start it with play=")
        if digit not in DTMF_DIGITS:
            raise HarnessError(f"not a DTMF digit: {digit!r}")
        with self._lock:
            self._dtmf_out.append(digit)

    def samples(self) -> np.ndarray:
        with self._lock:
            return np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)

    def snapshot(self) -> RtpStats:
        with self._lock:
            s = self.stats
            return RtpStats(
                s.packets,
                s.pcmu_packets,
                s.nonsilent_packets,
                set(s.payload_types),
                s.first_at,
                s.last_at,
                s.max_dbfs,
                s.remote,
                s.sent_packets,
                s.dtmf,
                s.last_nonsilent_at,
            )

    def wait_for(self, check, *, timeout: float, what: str) -> RtpStats:
        """Wait until `check(stats)` is true, e.g. `lambda s: s.nonsilent_packets >= 25`; raise on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            snap = self.snapshot()
            if check(snap):
                return snap
            if time.monotonic() >= deadline:
                raise HarnessError(f"RTP peer {self.ip}:{self.port}: not {what} within {timeout:.0f}s; stats {snap}")
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def _read_ulaw_wav(path: Path) -> bytes:
    """The raw payload of an 8 kHz mono G.711 u-law WAV (format tag 7; the stdlib `wave` reads PCM only)."""
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a WAV file")
    pos, fmt, payload = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            fmt = struct.unpack_from("<HHI", body)
        elif cid == b"data":
            payload = body
        pos += 8 + size + (size & 1)
    if fmt != (7, 1, 8000) or not payload:
        raise ValueError(f"{path}: want 8 kHz mono u-law (format 7), got format/channels/rate {fmt}")
    return payload


__all__ = ["RtpPeer", "RtpStats"]
