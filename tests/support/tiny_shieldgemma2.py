"""A tiny ShieldGemma 2, built from a config and saved to a folder: the real classes
(`ShieldGemma2ForImageClassification`, `ShieldGemma2Processor` with a Gemma 3 image processor
and a Gemma tokenizer), random weights, a few kilobytes. Tests load it by path through the
same code that loads google/shieldgemma-2-4b-it, so everything but the weights is real.

The tokenizer holds the special tokens the processor needs, whole `Yes` and `No` tokens, and
one token per printable character (so each policy's prompt tokenizes differently); the chat
template is the one transformers' conversion script ships with the model. Weights are drawn
wider than the default initialisation (whose image projection starts at zero) so that the
scores differ from image to image and from policy to policy.
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest

from monitor.guard.shieldgemma.loading_lock import LOADING_LOCK

SEED = 1234
IMAGE_SIZE = 16

# transformers: models/shieldgemma2/convert_shieldgemma2_weights_orbax_to_hf.py, _CHAT_TEMPLATE
CHAT_TEMPLATE = """{{ bos_token }}
{%- for message in messages -%}
    {%- if message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {{ '<start_of_turn>user\\n' }}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ 'You are a policy expert trying to help determine whether a generated or real image is in' }}
                {{ ' violation of the safety policy below. Your decision must very clearly follow the specific'}}
                {{ ' language used in the safety policy and should not include any interpretation outside of the' }}
                {{ ' safety policy.\\n\\n' }}
                {{ '<BEGIN_SAFETY_POLICY>\\n' }}
                {{ item['text'] + '\\n' }}
                {{ '</END_SAFETY_POLICY>\\n\\n' }}
                {{ 'Does the image violate the above policy? Your Answer must start with \\'Yes\\' or \\'No\\'.' }}
                {{ '<end_of_turn>\\n' }}
            {%- endif -%}
        {%- endfor -%}
        {{'<start_of_turn>model\\n'}}
    {%- else -%}
        {{ raise_exception("Conversation messages must contain iterable content containing images and policy definitions in text.") }}
    {%- endif -%}
{%- endfor -%}
"""

_SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
_TURNS = ["<start_of_turn>", "<end_of_turn>"]
_IMAGE = {
    "image_token": "<image_soft_token>",
    "boi_token": "<start_of_image>",
    "eoi_token": "<end_of_image>",
}


def build_tiny_shieldgemma2(folder: Path) -> Path:
    """Save a tiny ShieldGemma 2 (weights, config, processor, tokenizer) into `folder`."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    tokens = [*_SPECIAL, *_TURNS, *_IMAGE.values(), "Yes", "No"]
    tokens += [*sorted(set(string.printable) - set(string.whitespace)), "\u2581", "\n"]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    tokenizer = transformers.GemmaTokenizer(vocab=vocab, extra_special_tokens=_IMAGE)
    tokenizer.add_special_tokens({"additional_special_tokens": _TURNS})
    image_processor = Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = transformers.ShieldGemma2Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        image_seq_length=4,
    )

    text = transformers.Gemma3TextConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        layer_types=["full_attention", "full_attention"],  # the answer sees the whole prompt
        max_position_embeddings=1024,
    )
    vision = transformers.SiglipVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=4,
    )
    config = transformers.ShieldGemma2Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=4,  # 4x4 patches pooled to 2x2
        boi_token_index=vocab[_IMAGE["boi_token"]],
        eoi_token_index=vocab[_IMAGE["eoi_token"]],
        image_token_index=vocab[_IMAGE["image_token"]],
    )
    config.yes_token_index = vocab["Yes"]  # read by the model (default: Gemma 3's 10784)
    config.no_token_index = vocab["No"]
    folder.mkdir(parents=True, exist_ok=True)
    with LOADING_LOCK:  # see tiny_gemma.save_tiny_gemma
        torch.manual_seed(SEED)
        model = transformers.ShieldGemma2ForImageClassification(config)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.normal_(0.0, 0.3)
        model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
