"""Run-page figures as inline PNG data URIs (matplotlib, no JavaScript charting)."""

from __future__ import annotations

import numpy as np

from webapp.charts import plt, to_data_uri


def confusion_heatmap(matrix: list[list[int]], labels: list[str]) -> str:
    counts = np.asarray(matrix, dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = min(max(4.0, 0.28 * len(labels)), 24.0)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if len(labels) <= 60:
        axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        axes.set_yticks(range(len(labels)), labels, fontsize=7)
    axes.set_xlabel("predicted intent")
    axes.set_ylabel("true intent")
    figure.colorbar(image, ax=axes, fraction=0.04, label="share of the true intent's examples")
    return to_data_uri(figure)


def coverage_curve(points: list[dict], threshold: float) -> str:
    figure, axes = plt.subplots(figsize=(5.5, 3.6))
    thresholds = [p["threshold"] for p in points]
    axes.plot(thresholds, [p["coverage"] for p in points], label="coverage (share answered)")
    axes.plot(thresholds, [p["accuracy"] if p["accuracy"] is not None else np.nan for p in points], label="accuracy of those answered")
    axes.axvline(threshold, color="#ba2121", linestyle="--", label=f"recommended threshold {threshold:.2f}")
    axes.set_xlabel("confidence threshold")
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    return to_data_uri(figure)
