"""Engine benchmarks on the embedded model (CPU). Each figure is measured in this one run.

    python bench/engine.py            # or: make bench
    python bench/engine.py P5         # only the figures named (P5 also measures transformers b1)

P1  engine/raw tokens/s: the engine (transformers backend, batch 8, fresh store) vs a plain
    ``model.generate`` loop over the same prompts and batches.        target >= 0.9
P2  batch16/batch1 tokens/s: the engine at batch 16 vs batch 1.        target >= 5
P3  first/rerun wall time: a finished job rerun from the store.        target >= 50
P5  llamacpp/transformers tokens/s at batch 1 (llama.cpp runs in its worker process, so the
    figure includes the worker protocol).                              goal >= 4
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gravity.llm import BackendConfig, ChatRequest, SamplingParams, make_backend
from gravity.llm.engine import Engine
from gravity.store import Store

TOPICS = [
    "a lighthouse",
    "a library",
    "a mountain village",
    "a detective",
    "a long winter",
    "a market",
    "a river journey",
    "a lost letter",
    "a chess game",
    "an old clock",
    "a garden",
    "a train station",
    "a storm",
    "a violin",
    "a bakery",
    "a comet",
]
PROMPTS = [f"Write a short book description about {t}." for t in TOPICS]
# Greedy: both measurements decode the same tokens for the same prompts and batches.
PARAMS = SamplingParams(max_new_tokens=64, temperature=0.0, seed=0)


def requests(n: int) -> list[ChatRequest]:
    return [ChatRequest.from_prompt(p) for p in PROMPTS[:n]]


def engine_rate(backend, reqs, batch_size: int, store: Store | None) -> tuple[float, float]:
    engine = Engine(backend, store, batch_size=batch_size, progress=False)
    start = time.perf_counter()
    outs = engine.generate(reqs, PARAMS)
    wall = time.perf_counter() - start
    return sum(o.completion_tokens for o in outs) / wall, wall


def raw_rate(backend, reqs, batch_size: int) -> float:
    """The same work with transformers directly: chat template, left padding, generate."""
    import torch

    model, tok = backend.model, backend.tokenizer
    cfg_eos = model.generation_config.eos_token_id
    eos = {tok.eos_token_id, *([cfg_eos] if isinstance(cfg_eos, int) else cfg_eos or [])}
    tokens = 0
    start = time.perf_counter()
    for i in range(0, len(reqs), batch_size):
        texts = [
            tok.apply_chat_template(r.as_dicts(), tokenize=False, add_generation_prompt=True)
            for r in reqs[i : i + batch_size]
        ]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **enc,
                max_new_tokens=PARAMS.max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tok.pad_token_id,
            )
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            tokens += next((k for k, t in enumerate(row) if t in eos), len(row))
    return tokens / (time.perf_counter() - start)


def main(figures: set[str]) -> None:
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {os.cpu_count()} CPU cores, load average {load:.1f}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    hf = make_backend(BackendConfig())  # dtype auto (fp32 on CPU), embedded SmolLM2-135M-Instruct
    hf.load()
    hf.generate(requests(2), PARAMS)  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        if "P1" in figures:
            raw = raw_rate(hf, requests(16), 8)
            eng, _ = engine_rate(hf, requests(16), 8, Store(Path(tmp) / "p1.db"))
            print(
                f"P1 engine/raw tokens/s: {eng / raw:.2f}  (engine {eng:.1f}, raw {raw:.1f} tok/s, batch 8)"
            )

        if figures & {"P2", "P5"}:
            b1, _ = engine_rate(hf, requests(4), 1, None)
        if "P2" in figures:
            b16, _ = engine_rate(hf, requests(16), 16, None)
            print(
                f"P2 batch16/batch1 tokens/s: {b16 / b1:.2f}  (batch 16 {b16:.1f}, batch 1 {b1:.1f} tok/s)"
            )

        if "P3" in figures:
            store = Store(Path(tmp) / "p3.db")
            _, first = engine_rate(hf, requests(16), 8, store)
            start = time.perf_counter()
            outs = Engine(hf, store, progress=False).generate(requests(16), PARAMS)
            rerun = time.perf_counter() - start
            assert all(o.cached for o in outs)
            print(
                f"P3 first/rerun wall time: {first / rerun:.0f}  (first {first:.2f} s, rerun {rerun * 1000:.1f} ms)"
            )
    hf.close()
    if "P5" not in figures:
        return
    try:
        llama = make_backend(BackendConfig(backend="llamacpp"))
        llama.load()
    except Exception as exc:  # the llamacpp extra is optional
        print(f"P5 llamacpp/transformers tokens/s: skipped ({exc})")
        return
    llama.generate(requests(1), PARAMS)
    lrate, _ = engine_rate(llama, requests(4), 1, None)
    llama.close()
    print(
        f"P5 llamacpp/transformers tokens/s: {lrate / b1:.2f}  (llamacpp {lrate:.1f}, transformers {b1:.1f} tok/s, batch 1)"
    )


if __name__ == "__main__":
    ALL = {"P1", "P2", "P3", "P5"}
    wanted = {a.upper() for a in sys.argv[1:]} or ALL
    if not wanted <= ALL:
        sys.exit(f"unknown figure(s): {', '.join(sorted(wanted - ALL))}; valid: P1 P2 P3 P5")
    main(wanted)
