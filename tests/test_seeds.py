"""Per-request seeds in the transformers backend: a request's random stream depends on its own
seed only, never on its batch neighbours, the batch size, the batch order or an interrupted run.

The sampler is tested against hand-computed cases; the backend on the embedded model (fp32,
where batched and solo logits agree on these prompts); the kill-and-resume path in real
subprocesses killed with SIGKILL.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from gravity.llm import BackendConfig, ChatRequest, SamplingParams, make_backend
from gravity.llm.hf import RowSampler, row_uniforms, sample_rows
from tests.fakes import child_env

ROOT = Path(__file__).resolve().parents[1]

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
OTHERS = [f"Write one sentence about {t}." for t in TOPICS]
TARGET = "Invent a name for a small blue dragon and say what it eats."
SAMPLED = SamplingParams(max_new_tokens=24, temperature=1.0, top_p=0.95)


def _logits(probs: list[float]) -> torch.Tensor:
    return torch.log(torch.tensor([probs], dtype=torch.float32))


# --- the sampler, by hand ----------------------------------------------------------------------


def test_sample_rows_hand_computed():
    # Ranked: id3 0.5, id1 0.3, id2 0.15, id0 0.05, id5 0.0499, id4 0.0001. top_p 0.9 keeps
    # ids 3, 1, 2 (mass above id2 is 0.8 < 0.9; above id0 0.95). In vocabulary order the kept
    # tokens are 1, 2, 3 with CDF 0.3, 0.45, 0.95: the draw u picks the first token whose CDF
    # exceeds 0.95 u, i.e. id1 below u = 0.3158, id2 below 0.4737, then id3.
    logits = _logits([0.05, 0.3, 0.15, 0.5, 0.0001, 0.0499])
    cases = {0.0: 1, 0.30: 1, 0.32: 2, 0.47: 2, 0.48: 3, 0.99: 3}
    for u, expected in cases.items():
        got = sample_rows(logits, torch.tensor([u], dtype=torch.float64), 1.0, 0.9)
        assert got.tolist() == [expected], (u, got)
    # Boundaries: u * 0.95 against 0.3 and 0.45.
    assert sample_rows(logits, torch.tensor([0.3 / 0.95 - 1e-6]), 1.0, 0.9).item() == 1
    assert sample_rows(logits, torch.tensor([0.3 / 0.95 + 1e-6]), 1.0, 0.9).item() == 2
    assert sample_rows(logits, torch.tensor([0.45 / 0.95 + 1e-6]), 1.0, 0.9).item() == 3


def test_sample_rows_temperature_and_ties():
    # Temperature 0.5 squares the probabilities before renormalising: 0.4, 0.6 -> 0.16, 0.36
    # -> 0.3077, 0.6923 (CDF 0.3077 then 1); at temperature 1 the CDF is 0.4 then 1.
    logits = _logits([0.4, 0.6])
    assert sample_rows(logits, torch.tensor([0.39]), 1.0, 1.0).item() == 0
    assert sample_rows(logits, torch.tensor([0.41]), 1.0, 1.0).item() == 1
    assert sample_rows(logits, torch.tensor([0.30]), 0.5, 1.0).item() == 0
    assert sample_rows(logits, torch.tensor([0.31]), 0.5, 1.0).item() == 1
    # Ties at the nucleus edge are all kept: 0.4 then three tokens of 0.2; top_p 0.5 needs one
    # of them, so all three stay (CDF 0.2, 0.6, 0.8, 1.0 in vocabulary order).
    tied = _logits([0.2, 0.4, 0.2, 0.2])
    for u, expected in {0.1: 0, 0.5: 1, 0.7: 2, 0.9: 3}.items():
        assert sample_rows(tied, torch.tensor([u]), 1.0, 0.5).item() == expected
    # top_p below the top token's mass keeps only the top token, whatever the draw.
    assert {sample_rows(tied, torch.tensor([u]), 1.0, 0.1).item() for u in (0, 0.5, 0.99)} == {1}


def test_sample_rows_draw_at_the_top_never_picks_a_dropped_token():
    logits = _logits([0.5, 0.3, 0.15, 0.05])
    just_below_one = torch.tensor([math.nextafter(1.0, 0.0)], dtype=torch.float64)
    assert sample_rows(logits, just_below_one, 1.0, 0.7).item() == 1
    assert sample_rows(logits, just_below_one, 1.0, 1.0).item() == 3
    masked = torch.tensor([[0.0, 1.0, float("-inf")]])
    assert sample_rows(masked, torch.tensor([1.0], dtype=torch.float64), 1.0, 1.0).item() == 1


def test_sample_rows_frequencies_match_the_nucleus():
    logits = _logits([0.05, 0.3, 0.15, 0.5, 0.0001, 0.0499])
    draws = torch.from_numpy(np.random.default_rng(0).random(20000))
    tokens = sample_rows(logits.expand(len(draws), -1), draws, 1.0, 0.9)
    freq = torch.bincount(tokens, minlength=6).double() / len(draws)
    expected = torch.tensor([0, 0.3, 0.15, 0.5, 0, 0], dtype=torch.float64) / 0.95
    # 4 standard errors of a proportion near 0.5 over 20000 draws: 0.014.
    assert torch.allclose(freq, expected, atol=0.014), freq


def test_sample_rows_row_ignores_its_neighbours():
    gen = torch.Generator().manual_seed(0)
    vocab = 5000
    peaked = torch.randn(8, vocab, generator=gen) * 12  # small nuclei
    flat = torch.randn(8, vocab, generator=gen) * 0.5  # nuclei of thousands: the wide path
    scores = torch.cat([peaked, flat])
    draws = torch.rand(16, generator=gen, dtype=torch.float64)
    together = sample_rows(scores, draws, 0.8, 0.95)
    alone = torch.cat(
        [sample_rows(scores[i : i + 1], draws[i : i + 1], 0.8, 0.95) for i in range(16)]
    )
    perm = torch.randperm(16, generator=gen)
    shuffled = sample_rows(scores[perm], draws[perm], 0.8, 0.95)
    assert together.tolist() == alone.tolist()
    assert shuffled.tolist() == together[perm].tolist()
    assert len(set(together.tolist())) > 8  # real choices, not one token everywhere


def test_row_uniforms_depend_on_the_own_seed_only():
    a = row_uniforms([5, 6, 7], 10)
    assert a.shape == (3, 10) and bool(((a >= 0) & (a < 1)).all())
    assert torch.equal(row_uniforms([7, 5], 10), a[[2, 0]])
    assert torch.equal(row_uniforms([6], 4)[0], a[1, :4])  # a prefix of the same stream
    assert not torch.equal(a[0], a[1])
    # Seeds of any size (record seeds are 63-bit hashes, retries add strides) and negatives.
    big = row_uniforms([2**63 + 12345, -1], 3)
    assert big.shape == (2, 3) and not torch.equal(big[0], big[1])


def test_row_sampler_reads_the_step_from_the_sequence_length():
    uniforms = torch.tensor([[0.1, 0.9], [0.9, 0.1]], dtype=torch.float64)
    sampler = RowSampler(uniforms, prompt_len=5, temperature=1.0, top_p=1.0)
    scores = _logits([0.5, 0.5]).expand(2, -1).contiguous()
    first = sampler(torch.zeros(2, 5, dtype=torch.long), scores)
    second = sampler(torch.zeros(2, 6, dtype=torch.long), scores)
    assert first.argmax(-1).tolist() == [0, 1] and second.argmax(-1).tolist() == [1, 0]
    # One-hot: the sampled token scores 0, every other one -inf (so greedy picks it).
    assert first[0].tolist() == [0.0, float("-inf")]


# --- the backend on the embedded model --------------------------------------------------------


@pytest.fixture(scope="module")
def hf_fp32():
    with make_backend(BackendConfig(dtype="float32")) as backend:
        yield backend


def _reqs(prompts):
    return [ChatRequest.from_prompt(p) for p in prompts]


def test_request_alone_equals_request_in_a_batch_in_any_order(hf_fp32):
    target_seed = 424242
    (alone,) = hf_fp32.generate(_reqs([TARGET]), SAMPLED, seeds=[target_seed])
    prompts = [*OTHERS[:8], TARGET, *OTHERS[8:]]
    seeds = [*range(100, 108), target_seed, *range(108, 116)]
    batch = hf_fp32.generate(_reqs(prompts), SAMPLED, seeds=seeds)
    order = [16, 3, 8, 11, 0, 15, 5, 9, 2, 13, 7, 1, 14, 6, 10, 4, 12]
    shuffled = hf_fp32.generate(
        _reqs([prompts[i] for i in order]), SAMPLED, seeds=[seeds[i] for i in order]
    )
    assert alone.completion_tokens > 0
    assert batch[8].text == alone.text
    assert shuffled[order.index(8)].text == alone.text
    # Every other row too: each text follows its request, wherever it sits.
    assert [shuffled[order.index(i)].text for i in range(17)] == [c.text for c in batch]
    # The seed does choose the stream: other seeds give other texts for the same request.
    others = hf_fp32.generate(_reqs([TARGET] * 3), SAMPLED, seeds=[1, 2, 3])
    assert len({alone.text, *(c.text for c in others)}) == 4


def test_sampling_keeps_eos_and_stop_strings(hf_fp32):
    # A stop string ends a sampled row, cut before the string, while its neighbour goes on.
    count, other = hf_fp32.generate(
        _reqs(["Count from 1 to 10 separated by commas.", OTHERS[1]]),
        SamplingParams(max_new_tokens=24, temperature=0.7, stop=("5",)),
        seeds=[1, 2],
    )
    assert count.finish_reason == "stop" and "4" in count.text and "5" not in count.text
    assert other.text.strip() and "5" not in other.text
    # Short answers end at EOS before the limit (the batch goes on for the others), and
    # nothing after EOS (padding) leaks into the text.
    short = hf_fp32.generate(
        _reqs(["Say hello.", "Describe a cat in three words.", OTHERS[0]]),
        SamplingParams(max_new_tokens=24, temperature=1.0),
        seeds=[12, 13, 14],
    )
    assert any(o.completion_tokens < 24 for o in short)
    assert all((o.finish_reason == "stop") == (o.completion_tokens < 24) for o in short)
    assert not any("<|im_end|>" in o.text or "<|endoftext|>" in o.text for o in short)


def test_sampling_leaves_the_global_torch_generator_alone(hf_fp32):
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    hf_fp32.generate(_reqs(["Say hello."]), SamplingParams(max_new_tokens=4, seed=3))
    assert torch.equal(torch.rand(3), expected)


# --- kill -9 and resume -------------------------------------------------------------------------


def _params(n: int) -> list[SamplingParams]:
    """One seed per record, as the synthesis pipeline gives them."""
    return [SamplingParams(max_new_tokens=24, temperature=1.0, seed=1000 + i) for i in range(n)]


CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    from gravity.llm import BackendConfig, ChatRequest, make_backend
    from gravity.llm.engine import Engine
    from gravity.store import Store
    from tests.test_seeds import _params

    model, store_path, batch_size, kill_at = sys.argv[1:5]
    prompts = json.loads(os.environ["SEED_TEST_PROMPTS"])
    backend = make_backend(BackendConfig(model=model, dtype="float32"))
    calls = 0
    generate = backend.generate

    def generate_then_die(requests, params, seeds=None):
        global calls
        calls += 1
        outs = generate(requests, params, seeds)
        if calls == int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)  # the batch in flight is lost, as with kill -9
        return outs

    backend.generate = generate_then_die
    engine = Engine(backend, Store(store_path), batch_size=int(batch_size), progress=False)
    engine.generate([ChatRequest.from_prompt(p) for p in prompts], _params(len(prompts)))
    """
)


def _run(backend, store_path: Path, batch_size: int, prompts: list[str]) -> list:
    from gravity.llm.engine import Engine
    from gravity.store import Store

    with Store(store_path) as store:
        engine = Engine(backend, store, batch_size=batch_size, progress=False)
        return engine.generate(_reqs(prompts), _params(len(prompts)))


def _kill_and_resume(tmp_path: Path, model: str, prompts: list[str]) -> None:
    from gravity.store import Store

    # A run with batch 4 in a subprocess, SIGKILLed while its third batch is in flight.
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = child_env(SEED_TEST_PROMPTS=json.dumps(prompts))
    proc = subprocess.run(
        [sys.executable, str(script), model, str(tmp_path / "run.db"), "4", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    with Store(tmp_path / "run.db") as store:
        assert store.count_completions() == 8  # two batches stored, the third lost
    with make_backend(BackendConfig(model=model, dtype="float32")) as backend:
        # Resumed with batch 3 (other neighbours again): the 8 stored are read, 5 generated.
        resumed = _run(backend, tmp_path / "run.db", 3, prompts)
        # The uninterrupted run, batch 5, in a fresh store.
        reference = _run(backend, tmp_path / "ref.db", 5, prompts)
    assert sum(o.cached for o in resumed) == 8 and not any(o.cached for o in reference)
    assert [o.text for o in resumed] == [o.text for o in reference]
    assert len({o.text for o in reference}) == len(prompts)  # sampled, not one answer


def test_kill_and_resume_gives_the_uninterrupted_records_tiny(tmp_path, tiny_model):
    # The tiny random model: fast, and its sampled texts are near-uniform noise, so any change
    # of a request's stream shows.
    _kill_and_resume(tmp_path, str(tiny_model), OTHERS[:13])


@pytest.mark.slow
def test_kill_and_resume_gives_the_uninterrupted_records_embedded(tmp_path):
    _kill_and_resume(tmp_path, "smollm2", OTHERS[:13])
