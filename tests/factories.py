"""Test helpers shared by every part of the suite: tiny models and small data files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterable

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DATA = REPO_ROOT / "data" / "demo" / "intents.csv"
CLINC_DIR = REPO_ROOT.parent / "shared" / "data" / "clinc150"
CLINC_FULL = CLINC_DIR / "data_full.json"


def read_demo_rows() -> list[tuple[str, str]]:
    with DEMO_DATA.open(newline="", encoding="utf-8") as handle:
        return [(row["text"], row["intent"]) for row in csv.DictReader(handle)]


def write_csv(path: Path, rows: Iterable[tuple[str, str]], header: tuple[str, ...] = ("text", "intent")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: Iterable[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "intent": i}) + "\n" for t, i in rows), encoding="utf-8")
    return path


def build_tiny_bert(directory: Path, texts: Iterable[str]) -> Path:
    """A randomly initialised BERT of bert-tiny's shape (2 layers, 128 hidden, 2 heads) with a
    WordPiece tokenizer trained on ``texts``, saved as a local model directory."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(list(texts), trainers.WordPieceTrainer(vocab_size=2000, special_tokens=special))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
    )
    fast = BertTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=512, max_position_embeddings=128,
    )
    directory.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory
