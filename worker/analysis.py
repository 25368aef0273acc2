"""The post-call analysis lives in ``core/analysis.py`` (the API process analyses text conversations with
it too); the job imports it from here."""

from core.analysis import INSTRUCTIONS, MAX_ATTEMPTS, analyse, parse, run_and_store, transcript_text

__all__ = ["INSTRUCTIONS", "MAX_ATTEMPTS", "analyse", "parse", "run_and_store", "transcript_text"]
