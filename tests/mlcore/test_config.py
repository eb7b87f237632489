import pytest

import torch

from mlcore.config import TrainConfig
from mlcore.errors import ConfigError
from mlcore.train import resolve_device


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0), ("epochs", 2.5), ("batch_size", 0), ("learning_rate", 0.0), ("learning_rate", float("nan")),
        ("warmup", 1.0), ("max_length", 4), ("device", "tpu"), ("validation_fraction", 0.9), ("head_init", "zeros"),
        ("oos_mode", "ignore"), ("base_model", " "), ("seed", -1), ("epochs", True), ("label_smoothing", 1.0), ("label_smoothing", -0.1),
        ("label_smoothing", "0.1"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_round_trip_through_a_dict():
    config = TrainConfig(epochs=5, learning_rate=1e-4)
    assert TrainConfig.from_dict({**config.to_dict(), "unknown": 1}) == config


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
