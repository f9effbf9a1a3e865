"""Loading a ShieldGemma checkpoint into transformers: a hub id, a local folder, or a GGUF file.

torch and transformers are imported here, lazily, and only in the classifier's worker thread;
without them the error names the `shieldgemma` extra. A `.gguf` file loads with
`gguf_file=` (dequantised; Gemma 2 needs transformers >= 4.48, Gemma 3 >= 4.52.1 and gguf >=
0.16.2). Reading a GGUF file's metadata is slow (gguf-py parses the whole 262k-entry Gemma 3
vocabulary, about 10 s on a small CPU, each time the file is opened), and transformers opens
it three times: for the tokenizer, the config and the weights. So the converted tokenizer and
config are saved under `~/.cache/gemma-monitor/tokenizers/<sha256 of the file>-<transformers
version>` and reused, which leaves one read (for the weights); without that copy (a fresh
machine, a read-only home) they are converted again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.guard.classifier import ClassifierError
from monitor.guard.shieldgemma.loading_lock import LOADING_LOCK
from monitor.guard.shieldgemma.prompts import NO, YES

EXTRA_HINT = "pip install 'gemma-monitor[shieldgemma]'"
TOKENIZER_CACHE_ENV = "GEMMA_MONITOR_TOKENIZER_CACHE"


def require_extra() -> None:
    """Raise `ClassifierError` naming the extra when torch or transformers is missing."""
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise ClassifierError(
            f"the in-process ShieldGemma classifier needs {' and '.join(missing)}: {EXTRA_HINT}"
        )


def tokenizer_cache_dir() -> Path:
    """`$GEMMA_MONITOR_TOKENIZER_CACHE`, else `~/.cache/gemma-monitor/tokenizers`."""
    configured = os.environ.get(TOKENIZER_CACHE_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "gemma-monitor" / "tokenizers"


@dataclass(frozen=True)
class LoadedModel:
    """What a forward pass needs."""

    torch: Any
    tokenizer: Any
    model: Any
    device: Any
    yes_id: int
    no_id: int
    bos: str  # the BOS token as text: the chat template starts with it
    pad_id: int
    forward_kwargs: dict[str, Any]


def load(model: str, device: str = "cpu", tokenizer_cache: Path | None = None) -> LoadedModel:
    """Tokenizer and model for `model`, in eval mode on `device`; raises `ClassifierError`."""
    require_extra()
    import torch
    import transformers

    path = Path(model).expanduser()
    is_gguf = path.suffix == ".gguf"
    if is_gguf and not path.is_file():
        raise ClassifierError(f"no GGUF file at {path}")
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    dtype_arg = "dtype" if _version(transformers.__version__) >= (4, 56) else "torch_dtype"
    try:
        with LOADING_LOCK:  # transformers cannot build two models in two threads at once
            net, tokenizer = _load_weights(
                transformers, model, path, is_gguf, tokenizer_cache, {dtype_arg: dtype}
            )
        net.to(device)
    except (OSError, ValueError, ImportError, NotImplementedError, RuntimeError) as exc:
        raise ClassifierError(f"could not load ShieldGemma model {model!r}: {exc}") from exc
    net.eval()
    return _loaded(torch, model, net, tokenizer, device)


def _load_weights(
    transformers: Any,
    model: str,
    path: Path,
    is_gguf: bool,
    tokenizer_cache: Path | None,
    dtype: dict[str, Any],
) -> tuple[Any, Any]:
    if is_gguf:
        cache = tokenizer_cache or tokenizer_cache_dir()
        tokenizer, config = _gguf_tokenizer_and_config(transformers, path, cache)
        net = transformers.AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, config=config, **dtype
        )
    else:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model)
        net = transformers.AutoModelForCausalLM.from_pretrained(model, **dtype)
    return net, tokenizer


def _loaded(torch: Any, model: str, net: Any, tokenizer: Any, device: str) -> LoadedModel:
    vocab = tokenizer.get_vocab()
    missing = [token for token in (YES, NO) if token not in vocab]
    if missing:
        raise ClassifierError(
            f"the tokenizer of {model!r} has no single {' or '.join(missing)} token: "
            "not a ShieldGemma (Gemma) tokenizer"
        )
    # Only the last position's logits are needed; older Gemma code calls it num_logits_to_keep.
    params = inspect.signature(net.forward).parameters
    keep = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)
    return LoadedModel(
        torch=torch,
        tokenizer=tokenizer,
        model=net,
        device=torch.device(device),
        yes_id=int(vocab[YES]),
        no_id=int(vocab[NO]),
        bos=tokenizer.bos_token or "",
        pad_id=int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0),
        forward_kwargs={"use_cache": False} | ({keep: 1} if keep else {}),
    )


def _gguf_tokenizer_and_config(transformers: Any, path: Path, cache_root: Path) -> Any:
    """The tokenizer and config of a GGUF file, from the saved copy when there is one."""
    version = ".".join(transformers.__version__.split(".")[:2])
    saved = cache_root / f"{file_sha256(path, cache_root)}-tf{version}"
    if (saved / "tokenizer_config.json").is_file() and (saved / "config.json").is_file():
        try:
            return (
                transformers.AutoTokenizer.from_pretrained(str(saved)),
                transformers.AutoConfig.from_pretrained(str(saved)),
            )
        except (OSError, ValueError):
            shutil.rmtree(saved, ignore_errors=True)  # a damaged copy: convert again
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    config = transformers.AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache_root, prefix=".saving-"))
        try:
            tokenizer.save_pretrained(str(staging))
            config.save_pretrained(str(staging))
            os.replace(staging, saved)  # whole or not at all; a concurrent saver may win
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError:
        pass  # no cache (read-only home, a concurrent saver won): the next load converts again
    return tokenizer, config


def file_sha256(path: Path, cache_root: Path | None = None) -> str:
    """The sha256 of a file's content. With `cache_root`, remembered by path, size and mtime,
    so a multi-GB checkpoint is read once, not at every start."""
    stat = path.stat()
    memo = None
    if cache_root is not None:
        stamp = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
        memo = cache_root / "by-stat" / hashlib.sha256(stamp).hexdigest()
        try:
            known = memo.read_text().strip()
            if len(known) == 64:
                return known
        except OSError:
            pass
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    value = digest.hexdigest()
    if memo is not None:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            memo.write_text(value + "\n")
        except OSError:
            pass
    return value


def _version(text: str) -> tuple[int, int]:
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)
