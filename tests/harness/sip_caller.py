"""A sipp caller (UAC) with its RtpPeer: it INVITEs livekit-sip's SIP port, as a carrier delivering a call to one of
the product's numbers would. Same logs and helpers as the callee (tests/harness/sip.py SippCallee)."""

from __future__ import annotations

import os
from pathlib import Path

from .procs import HarnessError, ManagedProcess, free_tcp_udp_port, sipp_ports
from .rtp import RtpPeer
from .sip import SCENARIO_DIR, SippCallee, require_sipp

CALLER_NUMBER = "+15559999999"  # who the test caller is (From)


class SippCaller(SippCallee):
    """One sipp UAC running one scenario for one call (`-m 1`) to `number` at `target` ("ip:port").

    `call_ms` is sipp's `-d`: how long an answered call lasts before the caller hangs up (uac_call.xml). `play`:
    an 8 kHz u-law WAV the caller's RtpPeer streams once livekit-sip sends it media."""

    def __init__(
        self,
        scenario: str,
        *,
        ip: str,
        target: str,
        number: str,
        workdir: Path,
        caller: str = CALLER_NUMBER,
        call_ms: int = 10_000,
        play: Path | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        sipp = require_sipp()
        path = Path(scenario) if os.sep in scenario else SCENARIO_DIR / scenario
        if not path.is_file():
            raise HarnessError(f"no sipp scenario {path}")
        self.scenario = path
        self.ip, self.port = ip, free_tcp_udp_port(ip)
        self.number, self.caller = number, caller
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.rtp = RtpPeer(ip, play=play)
        self.messages_path = workdir / "messages.log"
        self.errors_path = workdir / "errors.log"
        self.screen_path = workdir / "screen.log"
        media_port, control_port = sipp_ports(ip, self.port)
        argv = [
            sipp,
            "-sf",
            str(path),
            "-i",
            ip,
            "-p",
            str(self.port),
            "-mi",
            ip,
            "-mp",
            str(media_port),
            "-cp",
            str(control_port),
            "-key",
            "rtp_port",
            str(self.rtp.port),
            "-key",
            "caller",
            caller,
            "-s",
            number,
            "-d",
            str(call_ms),
            "-m",
            "1",
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
            target,
        ]
        try:
            self.process = ManagedProcess(f"sipp[{path.name}]", argv, workdir / "sipp.stdout.log", cwd=workdir)
        except BaseException:
            self.rtp.close()
            raise

    def call_id(self) -> str | None:
        """The SIP Call-ID of the INVITE sipp sent (livekit-sip logs it as `sipCallID`)."""
        for m in self.messages():
            if m.direction == "sent" and m.first_line.startswith("INVITE "):
                for line in m.text.splitlines():
                    name, _, value = line.strip().partition(":")
                    if name.lower() in ("call-id", "i"):
                        return value.strip()
        return None

    def final_responses(self) -> list[int]:
        """The status codes of the final responses (>= 200) sipp received, in order."""
        out = []
        for m in self.messages():
            if m.direction == "received" and m.first_line.startswith("SIP/2.0 "):
                code = int(m.first_line.split()[1])
                if code >= 200:
                    out.append(code)
        return out


__all__ = ["CALLER_NUMBER", "SippCaller"]
