"""The real thing: fine-tune the shipped all-MiniLM-L6-v2 on a 10-intent slice of CLINC150."""

import numpy as np
import pytest
import torch

from mlcore.config import TrainConfig
from mlcore.data import load_labeled_data, select_intents
from mlcore.metrics import softmax
from mlcore.predictor import Predictor
from mlcore.scoring import evaluate_predictor
from mlcore.train import train
from tests.factories import CLINC_FULL

TEN_INTENTS = ["balance", "book_flight", "calendar", "change_language", "cook_time", "distance", "flip_coin",
               "insurance", "jump_start", "weather"]


@pytest.mark.slow
@pytest.mark.skipif(not CLINC_FULL.is_file(), reason="needs ../shared/data/clinc150")
def test_default_encoder_learns_a_clinc_slice(tmp_path):
    data = select_intents(load_labeled_data(CLINC_FULL), TEN_INTENTS)
    assert len(data.train) == 1000 and len(data.test) == 300
    result = train(TrainConfig(epochs=2, min_train_steps=0), data)
    path = tmp_path / "slice.pt"
    result.save(path)
    predictor = Predictor.from_file(path)
    report = evaluate_predictor(predictor, data.test, data.oos_test)
    assert report["accuracy"] >= 0.90
    assert report["oos_examples"] == 1000
    # The serving forward (mlcore's own torch BERT) matches the trained transformers model.
    texts = [e.text for e in data.test[:16]] + [e.text for e in data.oos_test[:16]]
    with torch.inference_mode():
        batch = result.tokenizer(texts, truncation=True, max_length=64, padding=True, return_tensors="pt")
        expected = softmax(result.model.eval()(**batch)["logits"].numpy(), result.temperature)
    np.testing.assert_allclose(predictor.probabilities(texts), expected, atol=1e-5)
