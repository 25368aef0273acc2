"""What every call's job costs before and while it runs: the job code comes from the forkserver, and the caller's
audio reaches the STT and the VAD at their own rate (bench/README.md, section 6 calls per core)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings
from core.store.db import Store
from pipelines.config import STT_SAMPLE_RATE
from worker import entrypoint
from worker.runtime import Runtime


def test_the_forkserver_preloads_the_job_module_so_job_processes_do_not_import_it_again(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, livekit_url="ws://127.0.0.1:1", livekit_api_key="k", livekit_api_secret="s" * 32
    )
    store = Store(settings.database_path)
    try:
        server = Runtime(settings, store)._build_server()
        assert entrypoint.__name__ in server._preload_modules
    finally:
        store.close()


def test_the_callers_audio_arrives_at_the_stt_sample_rate_in_the_configured_frames(tmp_path: Path) -> None:
    options = entrypoint.room_options("caller", Settings(data_dir=tmp_path))
    audio = options.get_audio_input_options()
    assert audio is not None and audio.sample_rate == STT_SAMPLE_RATE
    assert audio.frame_size_ms == 20 and audio.auto_gain_control is True  # the defaults
    assert options.participant_identity == "caller" and options.close_on_disconnect
    lean = entrypoint.room_options(
        "caller", Settings(data_dir=tmp_path, audio_input_frame_ms=100, auto_gain_control=False)
    )
    audio = lean.get_audio_input_options()
    assert audio is not None and audio.frame_size_ms == 100 and audio.auto_gain_control is False
    # the agent's audio goes out at its TTS's rate: no resampling in the job
    out = entrypoint.room_options("caller", Settings(data_dir=tmp_path), output_rate=16_000).get_audio_output_options()
    assert out is not None and out.sample_rate == 16_000


@pytest.mark.parametrize("frame_ms", [0, 5, 15, 210])
def test_an_input_frame_size_livekit_cannot_use_is_refused_at_startup(tmp_path: Path, frame_ms: int) -> None:
    with pytest.raises(ValueError, match="AUDIO_INPUT_FRAME_MS"):
        Settings(data_dir=tmp_path, audio_input_frame_ms=frame_ms)
