"""The classifier: a pretrained encoder, mean pooling over real tokens, and a linear head.

Mean pooling is how all-MiniLM-L6-v2 was trained to make sentence embeddings, so the
head starts from representations that already separate intents well.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class IntentClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    @property
    def config(self):  # the Trainer reads a few fields (e.g. for logging) from ``model.config``
        return self.encoder.config

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        logits = self.classifier(self.dropout(self.embed(input_ids, attention_mask, token_type_ids)))
        output = {"logits": logits}
        if labels is not None:
            output["loss"] = nn.functional.cross_entropy(logits, labels)
        return output

    @torch.no_grad()
    def init_head_from_centroids(self, embeddings: torch.Tensor, labels: torch.Tensor, scale: float = 20.0) -> None:
        """Start as a nearest-class-mean classifier: logits ~ scale * cosine(embedding, class mean).

        With the centroid head the first steps refine a classifier that is already good,
        instead of spending them on a random head that pushes noise into the encoder.
        """
        num_labels = self.classifier.out_features
        norms = embeddings.norm(dim=1, keepdim=True).clamp(min=1e-9)
        unit = embeddings / norms
        centroids = torch.zeros(num_labels, unit.shape[1], dtype=unit.dtype)
        centroids.index_add_(0, labels, unit)
        centroids = centroids / centroids.norm(dim=1, keepdim=True).clamp(min=1e-9)
        weight = centroids * (scale / norms.mean())
        self.classifier.weight.copy_(weight.to(self.classifier.weight.dtype))
        self.classifier.bias.zero_()


def build_encoder_from_config(model_config: dict[str, Any]) -> nn.Module:
    """An encoder with random weights in the architecture the artifact describes (no download),
    built by ``transformers``: the torch backend runs in the training worker, which imports it
    anyway (serving runs the ONNX export and imports neither torch nor ``transformers``)."""
    from transformers import AutoConfig, AutoModel

    config = dict(model_config)
    model_type = config.pop("model_type")
    encoder_config = AutoConfig.for_model(model_type, **config)
    return AutoModel.from_config(encoder_config, add_pooling_layer=False) if model_type == "bert" else AutoModel.from_config(encoder_config)


class MahalanobisDistance(nn.Module):
    """The smallest Mahalanobis distance of a sentence embedding (L2-normalised) to a class mean, with
    one covariance shared by the classes (Lee et al., 2018): the embedding part of the in-scope score
    (mlcore.ood). The precision matrix is stored factored, P = W Wᵀ, so the distance is a squared
    Euclidean one after one projection: |xW − mW|². It runs inside the ONNX graph as well."""

    def __init__(self, projection: torch.Tensor, projected_means: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("ood_projection", projection.float())
        self.register_buffer("ood_means", projected_means.float())
        self.register_buffer("ood_means_norm", (projected_means.float() ** 2).sum(dim=1))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        unit = embeddings / embeddings.norm(dim=1, keepdim=True).clamp(min=1e-12)
        projected = unit @ self.ood_projection
        squared = (projected * projected).sum(dim=1, keepdim=True) - 2 * projected @ self.ood_means.T + self.ood_means_norm
        return squared.min(dim=1).values
