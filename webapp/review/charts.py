"""The Traffic page's chart: predictions, low-confidence share and audit accuracy per day and
model version (matplotlib, as an inline PNG like the run page's figures)."""

from __future__ import annotations

from collections import defaultdict

from webapp.charts import plt, to_data_uri


def traffic_chart(days) -> str:
    """Three panels over the same days, one colour per model version."""
    by_version = defaultdict(list)
    for day in sorted(days, key=lambda d: d.day):
        by_version[day.model_version].append(day)
    figure, (requests, low, audit) = plt.subplots(3, 1, figsize=(8, 7.5), sharex=True)
    for version, rows in sorted(by_version.items()):
        x = [r.day for r in rows]
        requests.plot(x, [r.predictions for r in rows], marker="o", label=version)
        low.plot(x, [r.low_confidence_share if r.low_confidence_share is not None else float("nan") for r in rows], marker="o", label=version)
        audited = [r for r in rows if r.audit.reviewed]
        if audited:
            centre = [r.audit.accuracy for r in audited]
            audit.errorbar([r.day for r in audited], centre, marker="o", capsize=3, label=version,
                           yerr=[[max(0.0, c - r.audit.low) for c, r in zip(centre, audited)],
                                 [max(0.0, r.audit.high - c) for c, r in zip(centre, audited)]])
    requests.set_ylabel("predictions")
    low.set_ylabel("low-confidence share")
    low.set_ylim(0, 1)
    audit.set_ylabel("audit accuracy\n(95% Wilson interval)")
    audit.set_ylim(0, 1.02)
    for axes in (requests, low, audit):
        axes.grid(alpha=0.3)
    requests.legend(title="model version", fontsize=8)
    figure.autofmt_xdate()
    return to_data_uri(figure)
