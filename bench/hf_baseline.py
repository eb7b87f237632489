"""The same model as a plain Hugging Face model, loaded and served "the usual way" (baselines).

``MeanPoolBertClassifier`` is a ``BertPreTrainedModel`` with mlcore's head (mean pooling and a
linear layer), so ``from_pretrained`` and ``pipeline("text-classification")`` work on it.

Not a script: bench/serving.py exports the model with it and bench/baseline_app.py serves it
(BENCHMARKS.md, section 4).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import BertConfig, BertModel, BertPreTrainedModel, BertTokenizerFast
from transformers.modeling_outputs import SequenceClassifierOutput


class MeanPoolBertClassifier(BertPreTrainedModel):
    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return SequenceClassifierOutput(logits=self.classifier(pooled))


def export_hf_directory(artifact_path: str | Path, directory: str | Path) -> Path:
    """Write the artifact as a transformers model directory (config, safetensors, tokenizer)."""
    from tokenizers import Tokenizer

    from mlcore.artifact import load_artifact

    artifact = load_artifact(artifact_path)
    labels = artifact["labels"]
    settings = {k: v for k, v in artifact["model_config"].items() if k not in {"id2label", "label2id", "num_labels", "model_type"}}
    config = BertConfig(**settings, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    model = MeanPoolBertClassifier(config)
    state = {("bert." + k[len("encoder."):] if k.startswith("encoder.") else k): v for k, v in artifact["state_dict"].items()}
    model.load_state_dict(state, strict=True)
    directory = Path(directory)
    model.save_pretrained(directory)
    tokens = artifact["tokenizer"]
    tokenizer = BertTokenizerFast(tokenizer_object=Tokenizer.from_str(tokens["tokenizer_json"]), pad_token=tokens["pad_token"],
                                  model_max_length=artifact["max_length"])
    tokenizer.save_pretrained(directory)
    return directory


def load_pipeline(directory: str | Path):
    from transformers import AutoTokenizer, pipeline

    model = MeanPoolBertClassifier.from_pretrained(directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    torch.set_num_threads(torch.get_num_threads())
    return pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None, truncation=True, max_length=64)
