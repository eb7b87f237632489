"""Training throughput and accuracy: mlcore against a plain Hugging Face Trainer script.

    python -m bench.training_throughput [--intents 50] [--epochs 3] [--batch-size 32]

Same data (the first N CLINC150 intents: their train split to train, their test split to score),
same base model (the default all-MiniLM-L6-v2), same epochs and batch size. The plain script uses
AutoModelForSequenceClassification and the Trainer's default arguments otherwise (learning rate
5e-5, no warm-up, random batches). Wall time covers loading the model, tokenizing and training,
up to a trained model in memory; scoring the test split is not timed.
"""

from __future__ import annotations

import tempfile
import time

from bench.common import CLINC_FULL, argument_parser, header, keep_report
from mlcore.base_model import default_model_dir
from mlcore.config import TrainConfig
from mlcore.data import load_labeled_data, select_intents


def plain_trainer(data, epochs: int, batch_size: int) -> tuple[float, float]:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    started = time.perf_counter()
    labels = sorted({e.intent for e in data.train})
    ids = {name: i for i, name in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    model = AutoModelForSequenceClassification.from_pretrained(default_model_dir(), num_labels=len(labels))
    train = Dataset.from_dict({"text": [e.text for e in data.train], "label": [ids[e.intent] for e in data.train]})
    train = train.map(lambda b: tokenizer(b["text"], truncation=True), batched=True, remove_columns=["text"])
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
                                 save_strategy="no", report_to="none", disable_tqdm=True, logging_strategy="no")
        Trainer(model=model, args=args, train_dataset=train, processing_class=tokenizer).train()
    seconds = time.perf_counter() - started
    return seconds, test_accuracy(lambda out: out.logits, model, tokenizer, data.test, ids)


def test_accuracy(logits_of, model, tokenizer, examples, ids) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(examples), 128):
            chunk = examples[start : start + 128]
            batch = tokenizer([e.text for e in chunk], truncation=True, padding=True, return_tensors="pt")
            predicted = logits_of(model(**batch)).argmax(dim=-1).tolist()
            correct += sum(p == ids[e.intent] for p, e in zip(predicted, chunk))
    return correct / len(examples)


def ours(data, epochs: int, batch_size: int) -> tuple[float, float]:
    from mlcore.data import LabeledData
    from mlcore.train import train

    started = time.perf_counter()
    # Its validation split (CLINC's val) picks the best epoch and fits the calibration: timed.
    result = train(TrainConfig(epochs=epochs, batch_size=batch_size, min_train_steps=0), LabeledData(train=data.train, val=data.val))
    seconds = time.perf_counter() - started
    ids = {name: i for i, name in enumerate(result.labels)}
    return seconds, test_accuracy(lambda out: out["logits"], result.model, result.tokenizer, data.test, ids)


def main() -> None:
    parser = argument_parser("training_throughput", __doc__, "section 3")
    parser.add_argument("--intents", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    keep_report("training_throughput", args.output)
    full = load_labeled_data(CLINC_FULL)
    data = select_intents(full, sorted({e.intent for e in full.train})[: args.intents])
    data.oos_train, data.oos_val, data.oos_test = [], [], []
    print(header("Training throughput"))
    print(f"{len(data.train)} training utterances ({args.intents} intents), {args.epochs} epochs, batch {args.batch_size}; "
          f"scored on {len(data.test)} test utterances.\n")
    print("| recipe | wall time (s) | examples/s | test accuracy |\n| --- | --- | --- | --- |")
    for name, run in (("mlcore (defaults)", ours), ("plain Trainer, default arguments", plain_trainer)):
        seconds, accuracy = run(data, args.epochs, args.batch_size)
        print(f"| {name} | {seconds:.0f} | {len(data.train) * args.epochs / seconds:.1f} | {accuracy:.4f} |", flush=True)


if __name__ == "__main__":
    main()
