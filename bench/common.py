"""Shared helpers for the benchmark scripts: the machine, the command, the date."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CLINC_FULL = REPO_ROOT.parent / "shared" / "data" / "clinc150" / "data_full.json"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, {gpu}; Python {platform.python_version()}, torch {torch.__version__}"


def header(title: str) -> str:
    command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    return (f"## {title}\n\n- date: {datetime.date.today().isoformat()}\n- machine: {machine()}\n"
            f"- command: `{command}`\n")
