"""Shared helpers for the benchmark scripts: the machine, the command, the date; each script's help
text and its results folder.

Every script runs from the repository root as ``python -m bench.<script>`` (which puts the root on
sys.path). bench/README.md maps each script to the BENCHMARKS.md section it measures.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import os
import platform
import shlex
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CLINC_FULL = REPO_ROOT.parent / "shared" / "data" / "clinc150" / "data_full.json"
# Where each script writes what it measures, one folder per script (git-ignored).
RESULTS = REPO_ROOT / "bench" / "results"


def results_dir(script: str) -> Path:
    """bench/results/<script>/, made if missing."""
    folder = RESULTS / script
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def argument_parser(script: str, doc: str | None, sections: str, *, report: bool = True) -> argparse.ArgumentParser:
    """The script's command line: its docstring as the help text, and an epilog naming the
    BENCHMARKS.md section(s) its figures are in (the help quotes none). With ``report``, a
    ``--output`` option for the copy of the printed report (see keep_report)."""
    epilog = textwrap.fill(f"Measured figures: BENCHMARKS.md, {sections}. What it needs and where it writes: "
                           "bench/README.md.", 100)
    parser = argparse.ArgumentParser(prog=f"python -m bench.{script}", description=doc, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    if report:
        parser.add_argument("--output", type=Path, default=None, metavar="FILE",
                            help=f"also write what the script prints to FILE (default: a new report-<date>T<time>.md in "
                                 f"bench/results/{script}/)")
    return parser


class _Tee:
    """sys.stdout that also writes to a file, opened at the first write (a run that fails before
    printing anything leaves no empty report behind) and closed at exit."""

    def __init__(self, stream, path: Path) -> None:
        self.stream, self.path, self.file = stream, path, None

    def write(self, text: str) -> int:
        self.stream.write(text)
        if self.file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = self.path.open("w", encoding="utf-8", buffering=1)
            atexit.register(self.close)
        if not self.file.closed:
            self.file.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
        if self.file is not None and not self.file.closed:
            self.file.flush()

    def close(self) -> None:
        if sys.stdout is self:
            sys.stdout = self.stream
        if self.file is not None:
            self.file.close()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def keep_report(script: str, output: Path | None) -> Path:
    """From here on, what the script prints also goes to ``output`` (by default a new file in
    bench/results/<script>/, named by the date and time); stdout stays as it was."""
    path = output or RESULTS / script / f"report-{datetime.datetime.now():%Y-%m-%dT%H%M%S}.md"
    sys.stdout = _Tee(sys.stdout, path)
    return path


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
    command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *command_line()])
    return (f"## {title}\n\n- date: {datetime.date.today().isoformat()}\n- machine: {machine()}\n"
            f"- command: `{command}`\n")


def command_line() -> list[str]:
    """The command as typed: ``-m bench.<script>`` and its arguments (sys.argv[0] is the file's
    path when run with -m)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return ["-m", spec.name, *sys.argv[1:]]
    return list(sys.argv)
