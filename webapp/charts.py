"""Figures as inline PNG data URIs (matplotlib, no JavaScript charting), for any app's admin pages."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
# Labels are data (model versions, intent names), never TeX: "$5 and $6" must not be parsed as math.
matplotlib.rcParams["text.parse_math"] = False
import matplotlib.pyplot as plt  # noqa: E402


def to_data_uri(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
