"""Scoring a saved model on labeled examples (used by ``evaluate`` and, later, by the webapp)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mlcore.data import OOS_LABEL, Example
from mlcore.errors import DataError
from mlcore.evaluate import report_from_logits
from mlcore.prediction import PredictorBase


def evaluate_predictor(predictor: PredictorBase, examples: Sequence[Example], oos_examples: Sequence[Example] = ()) -> dict:
    """Metrics of ``predictor`` on in-scope ``examples`` and out-of-scope ``oos_examples``.

    Examples whose intent the model does not know cannot be scored: they are counted, not guessed.
    """
    label_ids = {name: i for i, name in enumerate(predictor.labels)}
    known = [e for e in examples if e.intent in label_ids]
    if not known:
        raise DataError("None of the evaluation examples has an intent this model knows.")
    oos_label_id = label_ids.get(OOS_LABEL)
    logits, distances = predictor.outputs([e.text for e in known])
    oos_logits, oos_distances = predictor.outputs([e.text for e in oos_examples]) if oos_examples else (None, None)
    report = report_from_logits(
        logits=logits,
        labels=np.array([label_ids[e.intent] for e in known]),
        label_names=predictor.labels,
        temperature=predictor.temperature,
        threshold=predictor.threshold,
        oos_logits=oos_logits,
        oos_label_id=oos_label_id,
        scorer=predictor.scorer, distances=distances, oos_distances=oos_distances,
    )
    report["unknown_intent_examples"] = len(examples) - len(known)
    return report


def answered_share(report: dict) -> float:
    """The accuracy over every in-scope example of the evaluation, an example whose intent the model
    does not know counting as wrong (the model cannot give that answer). Two models that know
    different intents are compared on the same questions this way: the gate's measure."""
    examples = report["examples"] + report.get("unknown_intent_examples", 0)
    return report["accuracy"] * report["examples"] / examples if examples else 0.0
