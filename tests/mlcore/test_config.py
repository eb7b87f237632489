import re
from dataclasses import fields
from typing import get_args, get_type_hints

import pytest

import torch

from mlcore.config import TrainConfig
from mlcore.errors import ConfigError
from mlcore.review_strategy import SERVING_ROUTES, ReviewRouting
from mlcore.train import resolve_device


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0), ("epochs", 2.5), ("batch_size", 0), ("learning_rate", 0.0), ("learning_rate", float("nan")),
        ("warmup", 1.0), ("max_length", 4), ("device", "tpu"), ("validation_fraction", 0.9), ("head_init", "zeros"),
        ("oos_mode", "ignore"), ("base_model", " "), ("seed", -1), ("epochs", True), ("label_smoothing", 1.0), ("label_smoothing", -0.1),
        ("label_smoothing", "0.1"), ("review_routing", "probability"), ("ambiguity_margin", 1.5), ("confidence_threshold", -0.1),
        ("in_scope_threshold", "0.5"), ("confidence_threshold", float("nan")),
    ],
)
def test_bad_values_are_refused_with_the_field_named(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_round_trip_through_a_dict():
    config = TrainConfig(epochs=5, learning_rate=1e-4)
    assert TrainConfig.from_dict({**config.to_dict(), "unknown": 1}) == config


def test_every_field_declares_its_option_and_no_help_text_quotes_a_figure():
    assert TrainConfig.option_names() == tuple(f.name for f in fields(TrainConfig))
    for declared in TrainConfig.options():
        assert declared.help.strip() and declared.default == getattr(TrainConfig(), declared.name), declared.name
        assert not re.search(r"\d\s*%|\bpoints?\b", declared.help), f"{declared.name}: figures belong in BENCHMARKS.md"


@pytest.mark.parametrize("declared", [o for o in TrainConfig.options() if o.min is not None], ids=lambda o: o.name)
def test_the_declared_bounds_are_the_ones_checked(declared):
    step = 1 if declared.type is int else 1e-9
    cases = [(declared.min, not declared.exclusive_min), (declared.max, not declared.exclusive_max),
             (declared.min - step, False), (declared.max + step, False)]
    for value, allowed in cases:
        if allowed:
            TrainConfig(**{declared.name: declared.type(value)})
        else:
            with pytest.raises(ConfigError, match=declared.name):
                TrainConfig(**{declared.name: declared.type(value)})


ROUTING_FIELDS = ("review_routing", "ambiguity_margin", "confidence_threshold", "in_scope_threshold")


def test_the_review_routing_is_servings_by_default():
    """Serving's settings of the same names, defaults and choices (intentflow_serving.config)."""
    from intentflow_serving.config import ServingSettings

    serving = ServingSettings.model_fields
    assert {name: getattr(TrainConfig(), name) for name in ROUTING_FIELDS} == {name: serving[name].default for name in ROUTING_FIELDS}
    assert get_args(get_type_hints(TrainConfig)["review_routing"]) == get_args(serving["review_routing"].annotation) == SERVING_ROUTES
    config = TrainConfig(review_routing="rule", ambiguity_margin=0.1, confidence_threshold=0.7, in_scope_threshold=0.05)
    assert config.routing == ReviewRouting(route="rule", ambiguity_margin=0.1, confidence_threshold=0.7, in_scope_threshold=0.05)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_label_smoothing_follows_the_review_rule_unless_set():
    assert TrainConfig().smoothing(fits_in_scope_score=True) == 0.1
    assert TrainConfig().smoothing(fits_in_scope_score=False) == 0.0
    assert TrainConfig(label_smoothing=0.2).smoothing(fits_in_scope_score=False) == 0.2
    assert TrainConfig(label_smoothing=0.0).smoothing(fits_in_scope_score=True) == 0.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu"
