"""How far does the embedding batch move a cosine? The near-duplicate filter's model (MiniLM).

    HF_HUB_OFFLINE=1 python bench/embed_drift.py [--threshold 0.95]

Pairs: each starter-catalog description and a copy with an eighth of its words replaced (half
with a sentence added), cosines about 0.76-0.997. Each pair's cosine is computed with the pairs
chunked in several ways (chunks of 1, 3, 7, 16, all; and shuffled in chunks of 5), as synthesis
chunks readers. Prints the largest difference between two batchings of the same pair, what
``threshold_cosine`` changes (pairs within ``BATCH_MARGIN`` of the threshold embedded alone),
and the time of batched and one-text embedding.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from gravity.books import load_catalog
from gravity.embed import BATCH_MARGIN, embed, pairwise_cosine


def pairs(seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    a, b = [], []
    for book in load_catalog():
        words = book.description.split()
        edited = list(words)
        for _ in range(max(1, len(words) // 8)):
            edited[rng.randrange(len(edited))] = rng.choice(words)
        a.append(book.description)
        b.append(" ".join(edited) + (" A gift for any reader." if rng.random() < 0.5 else ""))
    return a, b


def chunked(a: list[str], b: list[str], size: int, order: list[int]) -> np.ndarray:
    sims = np.empty(len(a))
    for start in range(0, len(order), size):
        ids = order[start : start + size]
        sims[ids] = pairwise_cosine([a[i] for i in ids], [b[i] for i in ids])
    return sims


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=0.95)
    args = parser.parse_args()
    a, b = pairs()
    n = len(a)
    straight, shuffled = list(range(n)), random.Random(1).sample(range(n), n)
    runs = {f"chunks of {s}": chunked(a, b, s, straight) for s in (1, 3, 7, 16, n)}
    runs["shuffled, chunks of 5"] = chunked(a, b, 5, shuffled)
    table = np.stack(list(runs.values()))
    spread = table.max(0) - table.min(0)
    import torch

    threads = torch.get_num_threads()
    print(f"{n} pairs, cosine {table.min():.3f}-{table.max():.3f}, torch threads {threads}")
    for name, sims in runs.items():
        print(
            f"  {name:>22}: max |cos - cos(all in one batch)| = {np.abs(sims - table[4]).max():.2e}"
        )
    print(
        f"largest spread of one pair over the batchings: {spread.max():.2e} (pair {spread.argmax()})"
    )
    near = int((np.abs(table[4] - args.threshold) <= BATCH_MARGIN).sum())
    print(
        f"pairs within {BATCH_MARGIN} of threshold {args.threshold} (embedded again alone): {near}"
    )
    texts = a + b
    start = time.perf_counter()
    embed(texts)
    batched = time.perf_counter() - start
    start = time.perf_counter()
    for text in texts:
        embed([text])
    alone = time.perf_counter() - start
    print(
        f"{len(texts)} texts: batched {batched:.2f} s ({len(texts) / batched:.0f}/s), "
        f"one at a time {alone:.2f} s ({len(texts) / alone:.0f}/s)"
    )


if __name__ == "__main__":
    main()
