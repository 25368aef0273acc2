"""End-to-end test harness: real livekit-server processes, run inside a
private network namespace made by `.ci/netns-run`, plus a LiveKit SDK audio client and audio helpers.

Modules:
    netns           -- refuse to run outside the test network namespace; the namespace's IP
    procs           -- start/stop child processes with log files and bounded waits
    livekit_server  -- LiveKitServer: the cached livekit-server binary in --dev mode
    sip             -- SipStack: Redis + livekit-server + livekit-sip, sipp callees (tests/sip/*.xml) with an RtpPeer
    rtp             -- RtpPeer: the callee's media socket, records PCMU from livekit-sip and plays u-law speech
    audio           -- espeak-ng speech rendered to WAV (48k/16k PCM, 8k u-law), RMS/silence helpers
    client          -- AudioRoomClient: livekit.rtc client that publishes a WAV and measures received audio
"""
