"""Tiny Gemma checkpoints built on the spot: random weights, a word-level tokenizer.

Real transformers models (Gemma 2 and Gemma 3 architectures, a few thousand parameters), saved
to a folder and loaded back by path through the classifier's own loading code, so tests run
the real forward pass, padding and masks in milliseconds. The vocabulary holds the words of
the ShieldGemma prompts, `Yes` and `No`, and the special tokens; anything else is `<unk>`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monitor.guard.checks import Harm
from monitor.guard.classifier import TextItem
from monitor.guard.shieldgemma.loading_lock import LOADING_LOCK
from monitor.guard.shieldgemma.prompts import render_prompt

SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>"]
EXTRA_TEXT = "how do I bake bread tell me a joke the sky is blue why hello there you"


def _vocabulary(with_answers: bool) -> dict[str, int]:
    from tokenizers import pre_tokenizers

    words = [*SPECIAL, *(["Yes", "No"] if with_answers else ["Maybe"]), *EXTRA_TEXT.split()]
    for harm in Harm:
        for item in (TextItem("q", harm), TextItem("q", harm, response="r")):
            words += [
                w for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(render_prompt(item))
            ]
    if not with_answers:
        words = [w for w in words if w not in ("Yes", "No")]
    vocab: dict[str, int] = {}
    for word in words:
        vocab.setdefault(word, len(vocab))
    return vocab


def save_tokenizer(folder: Path, *, with_answers: bool = True) -> int:
    """A word-level fast tokenizer in `folder`; returns its vocabulary size."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = _vocabulary(with_answers)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    tokenizer.save_pretrained(str(folder))
    return len(vocab)


def save_tiny_gemma(
    folder: Path, architecture: str = "gemma3", *, with_answers: bool = True
) -> Path:
    """A random tiny Gemma 2 or Gemma 3 causal LM and its tokenizer, saved in `folder`."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = save_tokenizer(folder, with_answers=with_answers)
    common: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "max_position_embeddings": 1024,
        # one local layer with a short window, one global: padding must not shift either
        "sliding_window": 8,
        "layer_types": ["sliding_attention", "full_attention"],
        "initializer_range": 0.3,  # spread the logits so scores differ between prompts
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
    }
    # Under the loading lock: a classifier still loading in a worker thread (an earlier test's)
    # has transformers build modules on the meta device process-wide, which would catch this
    # model too.
    with LOADING_LOCK:
        torch.manual_seed(1234)
        if architecture == "gemma2":
            model: Any = Gemma2ForCausalLM(Gemma2Config(**common))
        else:
            model = Gemma3ForCausalLM(Gemma3TextConfig(**common))
        model.save_pretrained(str(folder))
    return folder
