"""Shared bench helpers: percentiles, the result table, machine facts. Every figure is a ratio or a difference
measured side by side in one run; nothing here asserts an absolute time."""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    data = sorted(values)
    k = (len(data) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Row:
    section: str
    metric: str
    value: str
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def add(
        self, section: str, metric: str, value: str, target: str = "", met: bool | None = None, note: str = ""
    ) -> None:
        self.rows.append(Row(section, metric, value, target, met, note))
        print(
            f"[{section}] {metric}: {value}"
            + (f" (target {target}: {'met' if met else 'MISSED'})" if met is not None else ""),
            flush=True,
        )

    def table(self) -> str:
        lines = ["| section | metric | value | target | met |", "| --- | --- | --- | --- | --- |"]
        for r in self.rows:
            met = "" if r.met is None else ("met" if r.met else "**missed**")
            lines.append(f"| {r.section} | {r.metric} | {r.value} | {r.target} | {met} |")
        return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(
            next(
                line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
            ).split()[1]
        )
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, StopIteration):
        pass
    return (
        f"{os.cpu_count()} vCPU {cpu}{mem}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def env_settings(value: str) -> dict[str, str]:
    """`NAME=value,NAME=value` (a bench setting naming the product's settings for a run) as a dict."""
    pairs = (item.partition("=") for item in value.split(",") if item.strip())
    return {name.strip(): v.strip() for name, _, v in pairs}
