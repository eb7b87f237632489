"""Fine-tuning with the Hugging Face ``Trainer``: the only module that imports ``datasets``."""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from transformers import TrainerCallback

from mlcore.artifact import build_artifact, save_artifact
from mlcore.config import TrainConfig
from mlcore.data import OOS_LABEL, Example, LabeledData, check_trainable, dataset_fingerprint, intent_counts, stratified_split
from mlcore.base_model import load_tokenizer_and_encoder
from mlcore.errors import ConfigError, TrainingCancelled
from mlcore.evaluate import fit_temperature, in_scope_score, recommend_threshold, report_from_logits
from mlcore.metrics import macro_f1, softmax
from mlcore.modeling import IntentClassifier, MahalanobisDistance
from mlcore.ood import MIN_REFERENCE_TEXTS, InScopeScorer, mahalanobis_projection
from mlcore.predictor import Predictor
from mlcore.self_training import pseudo_labels

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int
    epoch: float
    # The latest validation metrics (accuracy, macro_f1, loss), once an epoch has been evaluated.
    metrics: dict[str, float] | None
    elapsed_seconds: float


ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]


@dataclass
class Splits:
    labels: list[str]
    train: list[Example]
    val: list[Example]
    # Out-of-scope texts used to tune the threshold (threshold mode) or scored as the "oos" class.
    oos_val: list[Example]
    test: list[Example]
    oos_test: list[Example]


def prepare_splits(data: LabeledData, config: TrainConfig) -> Splits:
    """Decide what trains, what validates, and what tunes the threshold."""
    train, val = list(data.train), list(data.val)
    oos_val = list(data.oos_val)
    if config.oos_mode == "class":
        train += data.oos_train
        val += data.oos_val
    else:
        oos_val += data.oos_train  # out-of-scope rows only tune the threshold
    check_trainable(train, source="The training data")
    if not val:
        train, val = stratified_split(train, fraction=config.validation_fraction, seed=config.seed)
    labels = sorted({e.intent for e in train})
    known = set(labels)
    return Splits(
        labels=labels,
        train=train,
        val=[e for e in val if e.intent in known],
        oos_val=[] if config.oos_mode == "class" else oos_val,
        test=[e for e in data.test if e.intent in known],
        oos_test=list(data.oos_test),
    )


def resolve_device(requested: str) -> str:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("Device 'cuda' was requested but torch sees no CUDA GPU here; use --device auto or --device cpu.")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


@dataclass
class TrainResult:
    model: IntentClassifier
    tokenizer: Any
    labels: list[str]
    temperature: float
    threshold: float
    metrics: dict[str, Any]
    fingerprint: str
    config: TrainConfig
    base_model: str
    history: list[dict[str, float]] = field(default_factory=list)
    # The in-scope score's statistics (mlcore.ood), or None where the run keeps the probability rule.
    in_scope_rule: dict[str, Any] | None = None

    def to_artifact(self) -> dict[str, Any]:
        encoder_config = json.loads(self.model.encoder.config.to_json_string(use_diff=False))
        model_config = {k: v for k, v in encoder_config.items() if not k.startswith("_") and k not in {"architectures", "transformers_version"}}
        tokenizer = {
            "tokenizer_json": self.tokenizer.backend_tokenizer.to_str(),
            "pad_token": self.tokenizer.pad_token,
            "pad_token_id": self.tokenizer.pad_token_id,
            "model_input_names": list(self.tokenizer.model_input_names),
        }
        return build_artifact(
            base_model=self.base_model, model_config=model_config, state_dict=self.model.state_dict(),
            labels=self.labels, tokenizer=tokenizer, max_length=self.config.max_length,
            temperature=self.temperature, threshold=self.threshold, train_config=self.config.to_dict(),
            metrics=self.metrics, dataset_fingerprint=self.fingerprint, in_scope_rule=self.in_scope_rule,
        )

    def save(self, path: str | Path) -> str:
        """Write the artifact atomically; return its SHA-256."""
        return save_artifact(self.to_artifact(), path)


def train(
    config: TrainConfig,
    data: LabeledData,
    *,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> TrainResult:
    """Fine-tune, keep the best epoch by validation macro-F1, calibrate, and evaluate; with
    unlabeled texts (and ``config.self_training``), train again on the confident ones as well."""
    result = _train_once(config, data, progress=progress, should_cancel=should_cancel)
    if not (data.unlabeled and config.self_training and config.oos_mode == "threshold"):
        return result
    return _self_train(config, data, result, progress=progress, should_cancel=should_cancel)


def _self_train(config: TrainConfig, data: LabeledData, first: TrainResult, *, progress, should_cancel) -> TrainResult:
    """The second pass on the reviewed labels plus the first model's confident pseudo-labels, on
    the first pass's validation split; kept if it validates as well (_reason_to_reject). Where
    nothing could tell (no validation split, no out-of-scope validation text) no second pass runs."""
    started = time.monotonic()
    if data.val:
        train_part, val_part = list(data.train), list(data.val)
    else:  # the split the first pass made (prepare_splits), so no pseudo-label ever validates
        train_part, val_part = stratified_split(data.train, fraction=config.validation_fraction, seed=config.seed)
    report: dict[str, Any] = {
        "unlabeled_texts": len(data.unlabeled), "unlabeled_fingerprint": dataset_fingerprint(Example(t, "") for t in data.unlabeled), "pseudo_labels": 0,
        "reviewed_only": _pass_report(first),
    }
    if not val_part:
        return _keep_first(first, report, "no validation split to compare the two passes on")
    if first.metrics["validation"].get("oos_auroc") is None:
        return _keep_first(first, report, NO_OUT_OF_SCOPE_EVIDENCE)
    pseudo = pseudo_labels(Predictor(first.to_artifact()), data.unlabeled,
                           labeled_texts=[e.text for e in data.train + data.val + data.test + data.oos_train + data.oos_val + data.oos_test],
                           limit=int(config.pseudo_label_ratio * len(train_part)), routing=config.routing)
    report["pseudo_labels"] = len(pseudo)
    if not pseudo:
        return _keep_first(first, report, "no unlabeled text to pseudo-label: serving would send them all to review, or they are labeled already")
    if should_cancel is not None and should_cancel():
        raise TrainingCancelled("Training was cancelled between the two self-training passes.")
    logger.info("self-training: a second pass on %d labeled texts and %d pseudo-labels", len(train_part), len(pseudo))
    # The pseudo-labels must not decide the review rule: the first pass decided it from the reviewed
    # labels alone, and counted as training texts they could fit the in-scope score (and its
    # smoothing) on mostly model-made labels. The same rule also keeps the two AUROCs comparable.
    second = _train_once(config, replace(data, train=train_part + pseudo, val=val_part, unlabeled=[]),
                         progress=progress, should_cancel=should_cancel, fits_in_scope_score=first.in_scope_rule is not None)
    report["self_trained"] = _pass_report(second)
    rejected = _reason_to_reject(second.metrics["validation"], first.metrics["validation"])
    chosen = first if rejected else second
    chosen.metrics["self_training"] = {**report, "kept": "reviewed_only" if rejected else "self_trained",
                                       **({"reason": rejected} if rejected else {}), "seconds": round(time.monotonic() - started, 2)}
    chosen.fingerprint = first.fingerprint  # the labeled data's, as without self-training
    return chosen


NO_OUT_OF_SCOPE_EVIDENCE = ("no out-of-scope validation texts: nothing would show that the pseudo-labels did not hurt review "
                            "routing (label some traffic out of scope, or give oos_val texts)")


def _keep_first(first: TrainResult, report: dict[str, Any], reason: str) -> TrainResult:
    first.metrics["self_training"] = {**report, "kept": "reviewed_only", "reason": reason}
    return first


def _pass_report(result: TrainResult) -> dict[str, Any]:
    """One pass's figures, for the report that compares the two."""
    validation, training = result.metrics["validation"], result.metrics["training"]
    return {"validation_accuracy": validation["accuracy"], "validation_macro_f1": validation["macro_f1"],
            "validation_oos_auroc": validation.get("oos_auroc"), "test_accuracy": result.metrics.get("test", {}).get("accuracy"),
            "train_seconds": training["train_seconds"], "rule": "in_scope_score" if result.in_scope_rule else "confidence",
            "label_smoothing": training["label_smoothing"]}


# How much out-of-scope AUROC the second pass may lose on validation and still be kept: half a point,
# the same tolerance the learning loop's target allows against a full-data model.
AUROC_TOLERANCE = 0.005


def _reason_to_reject(second: dict[str, Any], first: dict[str, Any]) -> str | None:
    """Why the second pass is not kept, or None: it must be at least as accurate in scope, and its
    out-of-scope AUROC not more than AUROC_TOLERANCE lower; pseudo-labels must not buy accuracy with
    worse review routing, and without the AUROC nothing shows they did not."""
    if second["accuracy"] < first["accuracy"]:
        return "the self-trained pass validated less accurately"
    if first.get("oos_auroc") is None or second.get("oos_auroc") is None:
        return NO_OUT_OF_SCOPE_EVIDENCE
    if second["oos_auroc"] < first["oos_auroc"] - AUROC_TOLERANCE:
        return f"the self-trained pass's out-of-scope AUROC was more than {AUROC_TOLERANCE} lower"
    return None


def _train_once(
    config: TrainConfig,
    data: LabeledData,
    *,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    fits_in_scope_score: bool | None = None,
) -> TrainResult:
    """Fine-tune, keep the best epoch by validation macro-F1, calibrate, and evaluate.
    ``fits_in_scope_score``: whether to fit the in-scope score, as decided by an earlier pass (None:
    decide from these splits, in_scope_score_fits)."""
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments, set_seed

    device = resolve_device(config.device)
    splits = prepare_splits(data, config)
    set_seed(config.seed)
    tokenizer, encoder = load_tokenizer_and_encoder(config.base_model, dropout=config.dropout)
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # mean pooling replaces BERT's [CLS] pooler; keep it out of the artifact
    label_ids = {name: i for i, name in enumerate(splits.labels)}
    model = IntentClassifier(encoder, num_labels=len(splits.labels), dropout=config.dropout)
    fits_score = in_scope_score_fits(config, splits, encoder.config.hidden_size) if fits_in_scope_score is None else fits_in_scope_score
    label_smoothing = config.smoothing(fits_in_scope_score=fits_score)

    def to_dataset(examples: list[Example], labeled: bool = True) -> Dataset:
        columns: dict[str, list] = {"text": [e.text for e in examples]}
        if labeled:
            columns["label"] = [label_ids[e.intent] for e in examples]
        # Tokenize once; the collator pads each batch to its own longest text.
        return Dataset.from_dict(columns).map(
            lambda batch: tokenizer(batch["text"], truncation=True, max_length=config.max_length),
            batched=True, remove_columns=["text"],
        )

    train_ds, val_ds = to_dataset(splits.train), to_dataset(splits.val)
    collate = DataCollatorWithPadding(tokenizer)
    if config.head_init == "centroid":
        _init_head_from_centroids(model, train_ds, collate, config.eval_batch_size)

    steps_per_epoch = math.ceil(len(train_ds) / config.batch_size)
    epochs = max(config.epochs, math.ceil(config.min_train_steps / steps_per_epoch))
    use_cuda = device == "cuda"
    scratch = tempfile.mkdtemp(prefix="mlcore-trainer-")
    bf16 = use_cuda and config.mixed_precision and torch.cuda.is_bf16_supported()
    args = TrainingArguments(
        output_dir=scratch,  # nothing is saved there: save_strategy="no"
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        num_train_epochs=epochs,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        label_smoothing_factor=label_smoothing,
        warmup_steps=config.warmup,  # a fraction of the total steps in this transformers release
        lr_scheduler_type="linear",
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=not use_cuda,
        bf16=bf16,
        fp16=use_cuda and config.mixed_precision and not bf16,
        eval_strategy="epoch",
        save_strategy="no",  # the best epoch is kept in memory by _BestEpoch, not in checkpoints
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        # Batches of similar length pad less: fewer wasted tokens per step on the CPU.
        train_sampling_strategy="group_by_length",
        dataloader_num_workers=0,
    )
    started = time.monotonic()
    keeper = _BestEpoch()
    callbacks = [keeper, _Hooks(progress, should_cancel, started, keeper)]
    trainer = Trainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
        data_collator=collate, compute_metrics=_trainer_metrics,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # progress goes to our callback, not to stdout
    try:
        trainer.train()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    train_seconds = time.monotonic() - started
    if callbacks[1].cancelled:
        raise TrainingCancelled(f"Training was cancelled at step {trainer.state.global_step} of {trainer.state.max_steps}.")
    model.eval()

    def logits_of(examples: list[Example]) -> np.ndarray:
        if not examples:
            return np.zeros((0, len(splits.labels)), dtype=np.float32)
        device = next(model.parameters()).device
        logits = _batched_outputs(lambda batch: model(**batch)["logits"], to_dataset(examples, labeled=False), collate, config.eval_batch_size, device)
        return logits.numpy()

    # The last epoch is scored here, by the pass that calibration needs anyway (not by the Trainer).
    val_logits, val_labels = logits_of(splits.val), np.array([label_ids[e.intent] for e in splits.val])
    if not keeper.record_final(float(trainer.state.epoch or epochs), val_logits, val_labels, len(splits.labels)):
        model.load_state_dict(keeper.best_state)  # an earlier epoch was better
        val_logits = logits_of(splits.val)
    oos_label_id = label_ids.get(OOS_LABEL) if config.oos_mode == "class" else None
    temperature = fit_temperature(val_logits, val_labels)
    ood = (_fit_in_scope_rule(config, model, splits, val_logits, lambda examples: to_dataset(examples, labeled=False), train_ds, collate)
           if fits_score else None)

    def scored(examples: list[Example]) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits and, with the in-scope score, the Mahalanobis distances: one pass over the texts."""
        return ood.outputs(examples) if ood else (logits_of(examples), None)

    oos_val_logits, oos_val_distances = scored(splits.oos_val) if splits.oos_val else (None, None)
    # The probability threshold from the same pass (in float32, as logits_of gives them).
    threshold = _recommend(val_logits, val_labels, None if oos_val_logits is None else oos_val_logits.astype(np.float32),
                           temperature, oos_label_id)
    metrics: dict[str, Any] = {
        "validation": _report((val_logits, ood.val_distances if ood else None), val_labels, splits, temperature, threshold,
                              (oos_val_logits, oos_val_distances), oos_label_id, ood),
        "training": {
            "device": device,
            "train_examples": len(splits.train),
            "val_examples": len(splits.val),
            "intent_counts": intent_counts(splits.train),
            "epochs": epochs,
            "label_smoothing": label_smoothing,
            "steps": trainer.state.global_step,
            "best_epoch": keeper.best_epoch,
            "history": keeper.history,
            "train_seconds": round(train_seconds, 2),
            "examples_per_second": round(len(splits.train) * epochs / train_seconds, 2) if train_seconds else None,
        },
    }
    if splits.test:
        metrics["test"] = _report(scored(splits.test), np.array([label_ids[e.intent] for e in splits.test]), splits, temperature, threshold,
                                  scored(splits.oos_test) if splits.oos_test else (None, None), oos_label_id, ood)
    metrics["training"]["seconds_with_calibration"] = round(time.monotonic() - started, 2)
    model.to("cpu")
    return TrainResult(
        model=model, tokenizer=tokenizer, labels=splits.labels, temperature=temperature, threshold=threshold,
        in_scope_rule=ood.to_artifact() if ood else None,
        metrics=metrics, fingerprint=dataset_fingerprint(data.train + data.oos_train), config=config,
        base_model=config.base_model, history=keeper.history,
    )


@dataclass
class _InScopeRule:
    head: MahalanobisDistance
    scorer: InScopeScorer
    outputs: Callable[[list[Example]], tuple[np.ndarray, np.ndarray]]
    val_distances: np.ndarray

    def to_artifact(self) -> dict[str, Any]:
        return {"projection": self.head.ood_projection.detach().cpu().clone(), "projected_means": self.head.ood_means.detach().cpu().clone(),
                "scorer": self.scorer.to_dict()}


def in_scope_score_fits(config: TrainConfig, splits: Splits, hidden_size: int) -> bool:
    """Whether the run fits the in-scope score, or keeps the probability rule (see TrainConfig.oos_score):
    the score needs enough in-scope validation texts for its reference, and more training texts than
    intents plus the encoder's width, or the shared covariance is singular."""
    covariance_rank = len(splits.train) - len(splits.labels)
    return not (config.oos_score == "probability" or config.oos_mode == "class" or len(splits.val) < MIN_REFERENCE_TEXTS
                or covariance_rank < hidden_size)


def _fit_in_scope_rule(config: TrainConfig, model: IntentClassifier, splits: Splits, val_logits: np.ndarray, to_dataset, train_ds,
                       collate) -> _InScopeRule:
    """Fit the in-scope score (mlcore.ood): class means and the shared covariance of the training
    texts' embeddings, then the reference distribution on the in-scope validation texts."""
    device = next(model.parameters()).device
    train_embeddings = _batched_outputs(lambda batch: model.embed(**batch), train_ds, collate, config.eval_batch_size, device).numpy()
    projection, projected_means = mahalanobis_projection(train_embeddings, train_ds["label"])
    head = MahalanobisDistance(torch.from_numpy(projection), torch.from_numpy(projected_means)).to(device)

    def outputs(examples: list[Example]) -> tuple[np.ndarray, np.ndarray]:
        if not examples:
            return np.zeros((0, len(splits.labels))), np.zeros(0)

        def both(batch):
            embedded = model.embed(**batch)
            return torch.cat([model.classifier(embedded), head(embedded)[:, None]], dim=1)

        rows = _batched_outputs(both, to_dataset(examples), collate, config.eval_batch_size, device).double().numpy()
        return rows[:, :-1], rows[:, -1]

    val_distances = outputs(splits.val)[1]
    scorer = InScopeScorer.fit(logit_score=config.oos_score.split("+")[0], logits=val_logits, distances=val_distances,
                               threshold=config.review_budget)
    return _InScopeRule(head, scorer, outputs, val_distances)


def _report(outputs, labels, splits: Splits, temperature, threshold, oos_outputs, oos_label_id, rule: _InScopeRule | None) -> dict[str, Any]:
    (logits, distances), (oos_logits, oos_distances) = outputs, oos_outputs
    return report_from_logits(
        logits=logits, labels=labels, label_names=splits.labels, temperature=temperature, threshold=threshold,
        oos_logits=oos_logits, oos_label_id=oos_label_id, scorer=rule.scorer if rule else None, distances=distances,
        oos_distances=oos_distances,
    )


def _recommend(val_logits, val_labels, oos_logits, temperature, oos_label_id) -> float:
    probabilities = softmax(val_logits, temperature)
    in_scope = val_labels != oos_label_id if oos_label_id is not None else np.ones(len(val_labels), dtype=bool)
    confidence = in_scope_score(probabilities, oos_label_id)
    correct = probabilities.argmax(axis=1) == val_labels
    if oos_label_id is not None:
        oos_confidence = confidence[~in_scope]
    else:
        oos_confidence = in_scope_score(softmax(oos_logits, temperature), None) if oos_logits is not None and len(oos_logits) else None
    return recommend_threshold(confidence[in_scope], correct[in_scope], oos_confidence)


def _trainer_metrics(prediction) -> dict[str, float]:
    logits, labels = prediction.predictions, prediction.label_ids
    predicted = np.asarray(logits).argmax(axis=1)
    return {"accuracy": float((predicted == labels).mean()), "macro_f1": macro_f1(labels, predicted, np.asarray(logits).shape[1])}


@torch.no_grad()
def _batched_outputs(fn, dataset, collate, batch_size: int, device: torch.device) -> torch.Tensor:
    """Apply ``fn(batch)`` over the dataset in batches of similar length; rows come back in dataset order.

    (The Trainer's own ``predict`` shuffles order when length grouping is on, so it is not used here.)
    """
    order = sorted(range(len(dataset)), key=lambda i: len(dataset[i]["input_ids"]))
    outputs = []
    for start in range(0, len(order), batch_size):
        rows = [{k: v for k, v in dataset[i].items() if k != "label"} for i in order[start : start + batch_size]]
        batch = {k: v.to(device) for k, v in collate(rows).items()}
        outputs.append(fn(batch).float().cpu())
    stacked = torch.cat(outputs)
    result = torch.empty_like(stacked)
    result[torch.tensor(order)] = stacked
    return result


# A class mean is well estimated from a few dozen examples; more only costs encoder passes.
CENTROID_EXAMPLES_PER_INTENT = 32


def _init_head_from_centroids(model: IntentClassifier, train_ds, collate, batch_size: int) -> None:
    model.eval()
    device = next(model.parameters()).device
    taken: dict[int, int] = {}
    rows = []
    for index, label in enumerate(train_ds["label"]):
        if taken.get(label, 0) < CENTROID_EXAMPLES_PER_INTENT:
            taken[label] = taken.get(label, 0) + 1
            rows.append(index)
    sample = train_ds.select(rows)
    embeddings = _batched_outputs(lambda batch: model.embed(**batch), sample, collate, batch_size, device)
    model.init_head_from_centroids(embeddings, torch.tensor(sample["label"]))
    model.train()


class _BestEpoch(TrainerCallback):
    """Keep the weights of the epoch with the best validation macro-F1 (in memory, no checkpoints)."""

    def __init__(self) -> None:
        self.best_f1 = -1.0
        self.best_epoch: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []
        self.latest: dict[str, float] | None = None

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if not metrics or model is None:
            return
        self.latest = {
            "epoch": round(float(state.epoch or 0), 3),
            "accuracy": float(metrics.get("eval_accuracy", 0.0)),
            "macro_f1": float(metrics.get("eval_macro_f1", 0.0)),
            "loss": float(metrics.get("eval_loss", 0.0)),
        }
        self.history.append(self.latest)
        if self.latest["macro_f1"] > self.best_f1:
            self.best_f1, self.best_epoch = self.latest["macro_f1"], self.latest["epoch"]
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def on_epoch_end(self, args, state, control, **kwargs):
        if state.epoch is not None and state.epoch >= args.num_train_epochs - 1e-6:
            control.should_evaluate = False  # the final weights are scored once, after training
        return control

    def record_final(self, epoch: float, logits: np.ndarray, labels: np.ndarray, num_labels: int) -> bool:
        """Score the final weights; True when they are the best (keep them), False to go back to ``best_state``."""
        predicted = np.asarray(logits).argmax(axis=1)
        loss = float(torch.nn.functional.cross_entropy(torch.as_tensor(logits).float(), torch.as_tensor(labels))) if len(labels) else 0.0
        self.latest = {"epoch": round(epoch, 3), "accuracy": float((predicted == labels).mean()) if len(labels) else 0.0,
                       "macro_f1": macro_f1(labels, predicted, num_labels), "loss": loss}
        self.history.append(self.latest)
        if self.latest["macro_f1"] >= self.best_f1 or self.best_state is None:
            self.best_f1, self.best_epoch = self.latest["macro_f1"], self.latest["epoch"]
            return True
        return False


class _Hooks(TrainerCallback):
    """Report progress after every step and stop cleanly between steps when asked to."""

    def __init__(self, progress: ProgressCallback | None, should_cancel: CancelCheck | None, started: float, keeper: _BestEpoch) -> None:
        self.progress, self.should_cancel, self.started, self.keeper = progress, should_cancel, started, keeper
        self.cancelled = False

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress(Progress(
                step=state.global_step, total_steps=state.max_steps, epoch=float(state.epoch or 0),
                metrics=self.keeper.latest, elapsed_seconds=time.monotonic() - self.started,
            ))
        if self.should_cancel is not None and self.should_cancel():
            self.cancelled = True
            control.should_training_stop = True
            control.should_evaluate = False
            control.should_save = False
        return control
