"""Engine orchestration: store hits and misses, order, samples, retries, rejects, durability."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from gravity.llm import ChatRequest, SamplingParams
from gravity.llm.engine import (
    Engine,
    Parsed,
    Reject,
    StructuredStop,
    extract_json,
    parse_structured,
)
from gravity.store import Store
from tests.fakes import ScriptedBackend

PARAMS = SamplingParams(max_new_tokens=16, seed=5)


def _requests(n: int, prefix: str = "prompt") -> list[ChatRequest]:
    # Mixed lengths so that length-sorted batching really reorders.
    return [ChatRequest.from_prompt(f"{prefix} {i} " + "x" * (i * 7 % 23)) for i in range(n)]


def test_order_is_input_order_with_mixed_lengths(tmp_path):
    engine = Engine(ScriptedBackend(), Store(tmp_path / "s.db"), batch_size=3, progress=False)
    reqs = _requests(10)
    outs = engine.generate(reqs, PARAMS)
    assert [o.text.split(":")[1] for o in outs] == [r.messages[-1].content[:40] for r in reqs]
    assert engine.backend.batches == [3, 3, 3, 1]


def test_store_hit_and_miss(tmp_path):
    store = Store(tmp_path / "s.db")
    first = Engine(ScriptedBackend(), store, progress=False)
    a = first.generate(_requests(4), PARAMS)
    assert store.count_completions() == 4 and not any(o.cached for o in a)
    again = Engine(ScriptedBackend(), store, progress=False)
    b = again.generate(_requests(6), PARAMS)  # 4 stored + 2 new
    assert [o.cached for o in b] == [True] * 4 + [False] * 2
    assert sorted(r.messages[-1].content for r in again.backend.seen) == sorted(
        r.messages[-1].content for r in _requests(6)[4:]
    )
    assert [o.text for o in b[:4]] == [o.text for o in a]
    # A different seed, model or message is a miss.
    other = Engine(ScriptedBackend(model="other"), store, progress=False)
    assert not any(o.cached for o in other.generate(_requests(2), PARAMS))
    assert not any(
        o.cached for o in again.generate(_requests(2), PARAMS.model_copy(update={"seed": 6}))
    )


def test_key_ignores_batch_size(tmp_path):
    store = Store(tmp_path / "s.db")
    Engine(ScriptedBackend(), store, batch_size=1, progress=False).generate(_requests(5), PARAMS)
    eng = Engine(ScriptedBackend(), store, batch_size=4, progress=False)
    assert all(o.cached for o in eng.generate(_requests(5), PARAMS))
    assert eng.calls == 0


def test_no_cache_bypasses_reads_but_writes(tmp_path):
    store = Store(tmp_path / "s.db")
    Engine(ScriptedBackend(), store, progress=False).generate(_requests(3), PARAMS)
    backend = ScriptedBackend(script=["fresh"] * 3)
    outs = Engine(backend, store, use_cache=False, progress=False).generate(_requests(3), PARAMS)
    assert [o.text for o in outs] == ["fresh"] * 3 and backend.seen
    assert store.count_completions() == 3  # same keys: INSERT OR IGNORE keeps one row each


def test_n_samples_use_consecutive_seeds(tmp_path):
    engine = Engine(ScriptedBackend(), Store(tmp_path / "s.db"), progress=False)
    outs = engine.generate(_requests(2), PARAMS.model_copy(update={"n": 3}))
    assert len(outs) == 6
    single = Engine(ScriptedBackend(), None, progress=False).generate(
        [_requests(2)[1]], PARAMS.model_copy(update={"seed": 7})
    )
    assert outs[5].text == single[0].text  # request 1, sample 2 -> seed 5 + 2


class Title(BaseModel):
    title: str
    year: int


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"title": "Emma", "year": 1815}', Title(title="Emma", year=1815)),
        ('```json\n{"title": "Emma", "year": 1815}\n```', Title(title="Emma", year=1815)),
        ('Sure! {"title": "Emma", "year": 1815} Hope it helps', Title(title="Emma", year=1815)),
        ("no json here", "no JSON object in output"),
        ('{"title": "Emma", "year": ', "malformed JSON in output"),
        ('{"title": "Emma"}', "schema: year: Field required"),
        ('{"title": "Emma", "year": "soon"}', "schema: year: Input should be a valid integer"),
        ("[1, 2]", "schema: <root>:"),
    ],
)
def test_parse_structured_never_raises(text, expected):
    result = parse_structured(text, Title)
    if isinstance(expected, Title):
        assert result == expected
    else:
        assert (
            isinstance(result, Reject)
            and result.reason.startswith(expected)
            and result.text == text
        )


def test_extract_json_raises_value_error_only():
    with pytest.raises(ValueError):
        extract_json("{{{")


def test_malformed_json_is_retried_with_new_seed_then_rejected(tmp_path):
    backend = ScriptedBackend(
        script=["not json", '{"title": "A", "year": 1}', "still bad", "nope", "{bad"]
    )
    engine = Engine(backend, Store(tmp_path / "s.db"), progress=False, batch_size=8)
    # Same length: batches keep input order (they are sorted by length, stably).
    reqs = [ChatRequest.from_prompt("reqA"), ChatRequest.from_prompt("reqB")]
    results = engine.generate_structured(reqs, PARAMS, Title, max_attempts=3)
    # attempt 1: first -> "not json", second -> valid; attempt 2: first -> "still bad";
    # attempt 3: first -> "nope"; the last scripted text is never needed.
    assert isinstance(results[1], Parsed) and results[1].value.year == 1
    assert results[1].attempts == 1
    assert isinstance(results[0], Reject)
    assert results[0].reason == "no JSON object in output (after 3 attempts)"
    assert backend.batches == [2, 1, 1]
    seeds_differ = len(
        {
            engine.key(reqs[0], PARAMS.model_copy(update={"seed": 5 + k * 1_000_003}))
            for k in range(3)
        }
    )
    assert seeds_differ == 3


def test_structured_success_after_retry(tmp_path):
    backend = ScriptedBackend(script=["oops", '{"title": "B", "year": 2}'])
    engine = Engine(backend, None, progress=False)
    (result,) = engine.generate_structured([ChatRequest.from_prompt("q")], PARAMS, Title)
    assert isinstance(result, Parsed) and result.attempts == 2 and result.value.title == "B"


def test_json_instruction_only_for_unconstrained_backends():
    constrained = ScriptedBackend(script=['{"title": "A", "year": 1}'])
    Engine(constrained, None, progress=False).generate_structured(
        [ChatRequest.from_prompt("q")], PARAMS, Title
    )
    assert constrained.seen[0].messages[-1].content == "q"
    free = ScriptedBackend(script=['{"title": "A", "year": 1}'], constrains_json=False)
    Engine(free, None, progress=False).generate_structured(
        [ChatRequest.from_prompt("q")], PARAMS, Title
    )
    content = free.seen[0].messages[-1].content
    assert content.startswith("q\n\nAnswer with a single JSON object") and '"year"' in content


def _writer(path: str, worker: int, n: int) -> None:
    store = Store(path)
    engine = Engine(ScriptedBackend(), store, batch_size=2, progress=False)
    # Both workers write an overlapping key range.
    engine.generate([ChatRequest.from_prompt(f"shared {i}") for i in range(n)], PARAMS)
    engine.generate([ChatRequest.from_prompt(f"own {worker} {i}") for i in range(n)], PARAMS)
    store.close()


def test_two_concurrent_writers(tmp_path):
    path = str(tmp_path / "s.db")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 60)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = Store(path)
    assert store.count_completions() == 60 + 2 * 60
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(DISTINCT key) FROM completions").fetchone()[0] == 180


JOB = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from gravity.llm import ChatRequest, SamplingParams
    from gravity.llm.engine import Engine
    from gravity.store import Store
    from tests.fakes import ScriptedBackend
    engine = Engine(ScriptedBackend(delay_s=0.15), Store({db!r}), batch_size=4, progress=False)
    reqs = [ChatRequest.from_prompt(f"job {{i}}") for i in range(40)]
    outs = engine.generate(reqs, SamplingParams(max_new_tokens=8, seed=1))
    print("calls", engine.calls, "done", len(outs), flush=True)
    """
)


def test_sigkill_mid_job_then_rerun_completes_exactly(tmp_path):
    root = str(Path(__file__).resolve().parents[1])
    db = str(tmp_path / "s.db")
    script = tmp_path / "job.py"
    script.write_text(JOB.format(root=root, db=db))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    # Wait until some (not all) batches are committed, then kill -9.
    deadline = time.monotonic() + 60
    stored = 0
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            stored = Store(db).count_completions()
        except Exception:
            continue
        if stored >= 12:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = Store(db).count_completions()
    assert 12 <= partial < 40, partial
    assert partial % 4 == 0  # whole batches only
    rerun = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True
    )
    calls = int(rerun.stdout.split()[1])
    assert calls == (40 - partial + 3) // 4  # only the missing requests were generated
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM completions").fetchone() == (
        40,
        40,
    )
    # The final set of keys equals an uninterrupted run's.
    fresh = tmp_path / "fresh.db"
    script.write_text(JOB.format(root=root, db=str(fresh)))
    subprocess.run([sys.executable, str(script)], capture_output=True, check=True)

    def rows(path):
        return sorted(sqlite3.connect(path).execute("SELECT key, text FROM completions"))

    assert rows(db) == rows(fresh)


def test_corrupt_store_is_a_clear_error(tmp_path):
    from gravity.errors import GravityError

    bad = tmp_path / "bad.db"
    bad.write_text("this is not sqlite" * 100)
    with pytest.raises(GravityError, match="not a usable gravity store"):
        Store(bad).count_completions()


def test_progress_plain_lines_when_not_a_tty(capsys):
    from gravity.progress import Progress

    with Progress(3, "demo", interval_s=0) as bar:
        for _ in range(3):
            bar.advance(1, tokens=10)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and err[-1].startswith("demo: 3/3 requests,") and "tok/s" in err[-1]


class SchemaEcho(ScriptedBackend):
    """A model that cannot follow a schema: it answers every JSON request with the schema
    itself (what the embedded model did on the transformers backend before constraints)."""

    def generate(self, requests, params, seeds=None):
        outs = super().generate(requests, params, seeds)
        if params.json_schema is None:
            return outs
        echo = json.dumps(params.json_schema)
        return [o.model_copy(update={"text": echo}) for o in outs]


def test_fast_stop_when_the_first_answers_are_all_invalid(tmp_path):
    backend = SchemaEcho()
    store = Store(tmp_path / "s.db")
    engine = Engine(backend, store, progress=False, batch_size=4)
    reqs = _requests(50)
    with pytest.raises(StructuredStop) as err:
        engine.generate_structured(reqs, PARAMS, Title, max_attempts=3, desc="tag", fast_stop=8)
    assert len(backend.seen) == 8  # the other 42 never asked, and no retry pass
    stop = err.value
    assert (len(stop.rejected), stop.not_asked) == (8, 42)  # 50 in = 8 rejected + 42 not asked
    message = str(stop)
    assert "\n" not in message
    assert message.startswith("tag: stopped: the first 8 answers were all invalid")
    assert "schema_mismatch 8" in message and "42 more not asked" in message
    assert "properties" in message  # the sample shows what the model wrote
    assert "llamacpp" in message  # and what to do
    assert store.count_completions() == 8  # what was done is kept


def test_no_fast_stop_when_one_of_the_first_answers_is_valid():
    script = ["junk"] * 7 + ['{"title": "A", "year": 1}'] + ["junk"] * 12
    engine = Engine(ScriptedBackend(script=script), None, progress=False, batch_size=4)
    reqs = [ChatRequest.from_prompt(f"q{i:02d}") for i in range(20)]
    params = PARAMS.model_copy(update={"temperature": 0.0})
    results = engine.generate_structured(reqs, params, Title, max_attempts=3, fast_stop=8)
    assert len(results) == 20  # every row accounted
    assert sum(isinstance(r, Parsed) for r in results) == 1
    assert len(engine.backend.seen) == 20  # greedy: no retry pass (it would repeat the answers)
    assert all(r.reason == "no JSON object in output" for r in results if isinstance(r, Reject))


def test_fewer_rows_than_the_fast_stop_are_retried_not_stopped():
    engine = Engine(SchemaEcho(), None, progress=False)
    results = engine.generate_structured(_requests(3), PARAMS, Title, max_attempts=2, fast_stop=8)
    assert [r.kind for r in results] == ["schema_mismatch"] * 3
    assert all(r.reason.endswith("(after 2 attempts)") for r in results)


def test_a_retry_pass_that_fails_again_ends_the_retries(capsys):
    valid = '{"title": "A", "year": 1}'
    # First pass: 1 valid among 10; retry 1: the first 4 retried answers fail again.
    script = [valid] + ["junk"] * 9 + ["junk"] * 4 + [valid] * 20
    engine = Engine(ScriptedBackend(script=script), None, progress=False, batch_size=32)
    reqs = [ChatRequest.from_prompt(f"q{i:02d}") for i in range(10)]
    results = engine.generate_structured(reqs, PARAMS, Title, max_attempts=3, fast_stop=4)
    assert len(engine.backend.seen) == 10 + 4  # retry 1 stopped after its first 4
    assert sum(isinstance(r, Parsed) for r in results) == 1 and len(results) == 10
    assert "the first 4 answers all failed again; no more retries" in capsys.readouterr().err


def test_json_instruction_shows_an_example_object_not_the_schema():
    free = ScriptedBackend(script=['{"title": "A", "year": 1}'], constrains_json=False)
    Engine(free, None, progress=False).generate_structured(
        [ChatRequest.from_prompt("q")], PARAMS, Title
    )
    hint = free.seen[0].messages[-1].content.split("\n", 2)[-1]
    assert "properties" not in hint and "$defs" not in hint
    example = json.loads(hint.splitlines()[-1])
    assert example == {"title": "...", "year": 0}
    Title.model_validate(example)


def test_fast_stop_counts_the_first_answers_of_a_step_across_rounds():
    """A step asked in rounds smaller than the fast stop (intent extraction does so) stops once
    its first answers, counted across the rounds, are all invalid."""
    backend = SchemaEcho()
    engine = Engine(backend, None, progress=False)
    for round_ in range(3):  # 3 rounds of 3: 9 answers, all invalid, below the stop of 10
        reqs = _requests(3, prefix=f"round {round_}")
        desc = f"intents {round_ + 1}/4"  # rounds are labelled as intent extraction does
        results = engine.generate_structured(reqs, PARAMS, Title, 1, desc, fast_stop=10)
        assert all(isinstance(r, Reject) for r in results)
    with pytest.raises(StructuredStop, match="intents: stopped: the first 10 answers"):
        engine.generate_structured(
            _requests(5, "round 3"), PARAMS, Title, 1, "intents 4/4", fast_stop=10
        )
    assert len(backend.seen) == 10  # the 10th answer stopped the step; 4 never asked
    # Another step has its own count; a step whose first answers parsed is never stopped.
    ok = Engine(ScriptedBackend(script=['{"title": "A", "year": 1}']), None, progress=False)
    ok.generate_structured(_requests(1), PARAMS, Title, 1, "tags", fast_stop=2)
    results = ok.generate_structured(_requests(6, "more"), PARAMS, Title, 1, "tags", fast_stop=2)
    assert len(results) == 6
