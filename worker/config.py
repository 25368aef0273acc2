"""The job's side of dispatch metadata (the contract is ``core/dispatch_meta.py``); the mapping of settings and stored
agents onto `pipelines/` is in ``core/pipeline.py``."""

from __future__ import annotations

import functools
from pathlib import Path

from core.dispatch_meta import BadDispatch, DispatchMeta, DispatchSigner
from core.pipeline import agent_spec, providers_config
from core.secrets import SecretBox
from core.settings import Settings

__all__ = ["BadDispatch", "DispatchMeta", "agent_spec", "parse_dispatch", "providers_config"]


def parse_dispatch(raw: str, settings: Settings) -> DispatchMeta:
    """The job's metadata if the product signed it for the LiveKit server this worker joined (`settings`' key);
    BadDispatch otherwise, whatever agent it names."""
    return DispatchMeta.parse(raw, _signer(settings.secret_key, settings.data_dir), server_key=settings.livekit_api_key)


@functools.cache
def _signer(secret_key: str, data_dir: Path) -> DispatchSigner:
    # once per job process: the key file is read on the first job, not on every one
    return DispatchSigner.from_secret_box(SecretBox.from_settings(secret_key, data_dir))
