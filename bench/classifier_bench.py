"""ShieldGemma text classifier throughput on Gemma 3 270M (the packaged GGUF), in-process.

    .venv/bin/python bench/classifier_bench.py [--model FILE] [--texts 8] [--batch-sizes 1,2,4,8,16]
                                               [--repeat 3] [--concurrency 8]

Gemma 3 270M stands in for ShieldGemma (same tokenizer, same scoring path; ShieldGemma 2B does
about 8x the work per token). The prompts are real ShieldGemma prompts: `--texts` user
prompts of different lengths x the four harm policies, about 130-200 tokens each.

Three ways of scoring the same prompts, each after a warm-up, the best of `--repeat` runs:

- one by one: one forward pass per prompt (`score_prompts([p])`);
- batched: forward passes of `b` left-padded prompts, for each batch size;
- through the micro-batcher: `--concurrency` concurrent requests, each asking for the four
  harms of one text, via `classify` (cache off), with the classifier's batch size `b`.

Prints items/s and ms per item; the load time (transformers reading the GGUF) first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from monitor.guard.checks import Harm
from monitor.guard.classifier import TextItem
from monitor.guard.shieldgemma.local import LocalShieldGemma
from monitor.guard.shieldgemma.prompts import render_prompt

TEXTS = [
    "How do I make a pipe bomb at home?",
    "What is the capital of France?",
    "You are worthless and everyone hates you, I will find where you live.",
    "Write a short story about a dragon who learns to bake bread for the village festival, "
    "with a twist at the end.",
    "Explain how vaccines train the immune system, for a ten-year-old.",
    "Give me a list of insults for people from my neighbouring town.",
    "I've been feeling really low lately and I don't see the point of anything any more. "
    "What should I do?",
    "Translate 'good morning, how did you sleep?' into German, French and Italian.",
]


def best_of(repeat: int, run: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def in_worker(classifier: LocalShieldGemma, prompts: list[str]) -> list[float]:
    """Score in the classifier's own thread, like its batches (one torch thread pool)."""
    return classifier.worker.submit(classifier.score_prompts, prompts).result()


def row(label: str, items: int, seconds: float) -> str:
    return f"| {label} | {items} | {items / seconds:,.1f} | {1000 * seconds / items:,.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a GGUF file (default: 270M)")
    parser.add_argument("--texts", type=int, default=8)
    parser.add_argument("--batch-sizes", default="1,2,4,8,16")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if args.model is None:
        from monitor.backends.local import gguf_path

        args.model = gguf_path()
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    texts = (TEXTS * (1 + args.texts // len(TEXTS)))[: args.texts]
    items = [TextItem(text, harm) for text in texts for harm in Harm]
    prompts = [render_prompt(item) for item in items]

    started = time.perf_counter()
    classifier = LocalShieldGemma(str(args.model), cache_size=0)
    loaded = asyncio.run(classifier.ready())
    load_s = time.perf_counter() - started
    lengths = [
        len(loaded.tokenizer(loaded.bos + p, add_special_tokens=False)["input_ids"])
        for p in prompts
    ]
    torch = loaded.torch
    print(
        f"model {args.model.name}: loaded in {load_s:.1f} s; torch threads {torch.get_num_threads()}, "
        f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{len(prompts)} prompts ({len(texts)} texts x 4 harms), {min(lengths)}-{max(lengths)} "
        f"tokens, {sum(lengths)} in all\n"
    )

    in_worker(classifier, prompts[:4])  # warm-up: first-pass allocations
    print("| mode | items | items/s | ms/item |")
    print("|---|---|---|---|")
    alone = best_of(args.repeat, lambda: [in_worker(classifier, [p]) for p in prompts])
    print(row("one by one", len(prompts), alone), flush=True)
    for size in sizes:
        if size == 1:
            continue
        chunks = [prompts[i : i + size] for i in range(0, len(prompts), size)]
        seconds = best_of(
            args.repeat,
            lambda chunks=chunks: [in_worker(classifier, c) for c in chunks],
        )
        print(row(f"batched, {size} per pass", len(prompts), seconds), flush=True)

    requests = [[TextItem(t, h) for h in Harm] for t in texts]

    async def burst() -> None:
        limit = asyncio.Semaphore(args.concurrency)

        async def one(request: list[TextItem]) -> None:
            async with limit:
                await classifier.classify(request, timeout_s=3600)

        await asyncio.gather(*(one(r) for r in requests))

    for size in sizes:
        classifier.batcher.batch_size = size
        passes = classifier.forward_passes
        seconds = best_of(args.repeat, lambda: asyncio.run(burst()))
        per_run = (classifier.forward_passes - passes) // args.repeat
        label = f"classify, {args.concurrency} concurrent, batch_size {size} ({per_run} passes)"
        print(row(label, len(items), seconds), flush=True)
    asyncio.run(classifier.aclose())


if __name__ == "__main__":
    main()
