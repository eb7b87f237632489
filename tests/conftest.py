from __future__ import annotations

import pytest

from tests.factories import DEMO_DATA, build_tiny_bert, read_demo_rows

pytest_plugins = ["tests.webapp_fixtures", "tests.aws_fixtures"]


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory) -> str:
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), [text for text, _ in read_demo_rows()]))


@pytest.fixture(scope="session")
def tiny_config(tiny_base_model):
    from mlcore.config import TrainConfig

    # Few steps, a high rate: a randomly initialised tiny encoder learns the demo keywords quickly.
    return TrainConfig(base_model=tiny_base_model, epochs=6, min_train_steps=0, batch_size=16, learning_rate=1e-3, warmup=0.0)


@pytest.fixture(scope="session")
def demo_data():
    from mlcore.data import load_labeled_data

    return load_labeled_data(DEMO_DATA)


@pytest.fixture(scope="session")
def tiny_result(tiny_config, demo_data):
    from mlcore.train import train

    return train(tiny_config, demo_data)


@pytest.fixture(scope="session")
def tiny_artifact(tiny_result, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("artifact") / "tiny.pt"
    tiny_result.save(path)
    return str(path)


@pytest.fixture(scope="session")
def scored_result(tiny_config, demo_data):
    """The tiny model with an in-scope score: a quarter of the demo rows validate (67 texts, over
    mlcore.ood.MIN_REFERENCE_TEXTS), so the run fits the score as a CLINC150-sized run does."""
    from mlcore.config import TrainConfig
    from mlcore.train import train

    return train(TrainConfig(**{**tiny_config.to_dict(), "validation_fraction": 0.25}), demo_data)


@pytest.fixture(scope="session")
def scored_artifact(scored_result, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("artifact") / "scored.pt"
    scored_result.save(path)
    return str(path)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
