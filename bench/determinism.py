"""How often does batching change a text? The transformers backend on the embedded model.

    python bench/determinism.py [--n 32] [--max-new-tokens 32] [--dtypes bfloat16 float32]
                                [--modes greedy sampled]

Per-request seeds make each request's random stream independent of its batch; what can still
differ is the arithmetic: with left padding the same prompt sits in a differently shaped batch,
and the last bits of its logits may move, which can flip a near-tie (greedy) or a draw that falls
on a CDF boundary (sampled). For each dtype this prints, over ``n`` prompts of varied lengths:

- same batch twice: texts that differ when the identical batch is run again (expected 0);
- alone vs batched: texts that differ between each prompt generated alone (batch 1) and the
  same prompt inside one batch of all ``n``, greedy and sampled (temperature 0.7, top_p 0.95,
  one seed per prompt).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gravity.llm import BackendConfig, ChatRequest, SamplingParams, make_backend

SUBJECTS = [
    "a lighthouse",
    "a library that only opens at night",
    "a mountain village",
    "a retired detective who keeps bees",
    "a long winter",
    "a market",
    "a river journey through three countries before the rains",
    "a lost letter",
    "a chess game",
    "an old clock",
    "a garden",
    "a train station where nobody ever arrives on time",
    "a storm",
    "a violin",
    "a bakery run by two sisters who no longer speak to each other",
    "a comet",
]
FORMS = [
    "Write a short book description about {}.",
    "In two sentences, pitch a novel to a teenage reader about {}, and say why they would "
    "enjoy it more than the last thing they read.",
]


def prompts(n: int) -> list[str]:
    """``n`` prompts of varied lengths (so batches need left padding)."""
    every = [form.format(s) for form in FORMS for s in SUBJECTS]
    return [every[i % len(every)] + ("" if i < len(every) else f" ({i})") for i in range(n)]


def differing(a: list[str], b: list[str]) -> int:
    """How many positions hold different texts."""
    return sum(x != y for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--modes", nargs="+", default=["greedy", "sampled"])
    args = parser.parse_args()
    reqs = [ChatRequest.from_prompt(p) for p in prompts(args.n)]
    seeds = [1000 + i for i in range(args.n)]
    modes = {
        "greedy": SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0),
        "sampled": SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.7),
    }
    print(f"{args.n} prompts, {args.max_new_tokens} new tokens, embedded SmolLM2-135M")
    for dtype in args.dtypes:
        with make_backend(BackendConfig(dtype=dtype, batch_size=args.n)) as backend:
            for mode in args.modes:
                params = modes[mode]
                start = time.perf_counter()
                batched = [c.text for c in backend.generate(reqs, params, seeds=seeds)]
                again = [c.text for c in backend.generate(reqs, params, seeds=seeds)]
                alone = [
                    backend.generate([r], params, seeds=[s])[0].text for r, s in zip(reqs, seeds)
                ]
                wall = time.perf_counter() - start
                print(
                    f"{dtype:8s} {mode:7s}  same batch twice: {differing(batched, again)}/{args.n}"
                    f" differ   alone vs batched: {differing(batched, alone)}/{args.n} differ"
                    f" ({100 * differing(batched, alone) / args.n:.0f}%)   [{wall:.0f} s]",
                    flush=True,
                )


if __name__ == "__main__":
    main()
