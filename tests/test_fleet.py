"""The openai backend against mock OpenAI-compatible servers on 127.0.0.1 (bench/fleet.py's):
continuous dispatch, per-server concurrency, retries under error rates, and what is kept when a
run stops. Fast: the servers answer a fixed text."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gravity.errors import GravityError
from gravity.llm import BackendConfig, ChatRequest, SamplingParams, make_backend
from gravity.llm.engine import Engine
from gravity.store import Store

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("uvicorn") is None,
    reason="the mock servers need uvicorn (the fleet extra)",
)
BENCH = Path(__file__).parents[1] / "bench" / "fleet.py"


class Mock:
    """One mock server process; ``stats()`` reads its counters."""

    def __init__(
        self,
        latency_ms: float = 0,
        slow_ms: float = 2000,
        error_rate: float = 0,
        echo: bool = False,
    ):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        args = ["--latency-ms", str(latency_ms), "--slow-ms", str(slow_ms)]
        args += ["--error-rate", str(error_rate)] + (["--echo"] if echo else [])
        self.proc = subprocess.Popen([sys.executable, str(BENCH), "--serve", str(self.port), *args])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        self.proc.kill()
        raise RuntimeError("mock server did not start")

    def stats(self) -> dict:
        import json
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def mocks(request):
    started: list[Mock] = []

    def start(**kw) -> Mock:
        started.append(Mock(**kw))
        return started[-1]

    yield start
    for m in started:
        m.stop()


def _backend(urls: list[str], **kw):
    cfg = BackendConfig(backend="openai", model="mock", base_urls=urls, **kw)
    return make_backend(cfg)


PARAMS = SamplingParams(max_new_tokens=8, temperature=0.0)


def _reqs(n: int, mark: dict[int, str] | None = None) -> list[ChatRequest]:
    mark = mark or {}
    return [ChatRequest.from_prompt(f"item {i} {mark.get(i, '')}") for i in range(n)]


def test_a_slow_request_holds_only_its_own_slot(mocks):
    """Continuous dispatch: while request 0 takes 2 s, the other slot serves the rest (a batch
    barrier would hold them behind it)."""
    server = mocks(slow_ms=2000)
    backend = _backend([server.url], concurrency=2)
    order = [pos for pos, _ in backend.generate_stream(_reqs(60, {0: "SLOW"}), [PARAMS] * 60)]
    assert sorted(order) == list(range(60))
    assert order.index(0) >= 30, order[:10]


def test_at_most_concurrency_in_flight_per_server(mocks):
    servers = [mocks(latency_ms=30), mocks(latency_ms=30)]
    engine = Engine(_backend([s.url for s in servers], concurrency=3), None, progress=False)
    outs = engine.generate(_reqs(120), PARAMS)
    assert len(outs) == 120 and all(o.text for o in outs)
    stats = [s.stats() for s in servers]
    assert all(s["max_in_flight"] <= 3 for s in stats), stats
    assert all(s["max_in_flight"] >= 2 for s in stats), stats  # both were kept busy
    assert sum(s["answered"] for s in stats) == 120


def test_every_row_completes_under_429_and_500_answers(mocks, tmp_path):
    server = mocks(error_rate=0.2)
    engine = Engine(
        _backend([server.url], concurrency=8, max_retries=12),
        Store(tmp_path / "s.db"),
        progress=False,
    )
    outs = engine.generate(_reqs(150), PARAMS)
    assert len(outs) == 150 and all(o.finish_reason == "stop" and o.text for o in outs)
    stats = server.stats()
    assert stats["answered"] == 150 and stats["requests"] > 150  # the refused were retried
    assert engine.store.count_completions() == 150


def test_a_stopped_run_keeps_what_finished_and_a_rerun_sends_only_the_rest(mocks, tmp_path):
    server = mocks(latency_ms=5)
    store = Store(tmp_path / "s.db")
    engine = Engine(_backend([server.url], concurrency=4), store, progress=False, batch_size=16)
    # The engine sends longer prompts first: the short FATAL one goes out near the end.
    requests = _reqs(200, {i: "padding " * 4 for i in range(200)})
    requests[150] = ChatRequest.from_prompt("FATAL")
    with pytest.raises(GravityError, match="HTTP 404"):
        engine.generate(requests, PARAMS)
    kept = store.count_completions()
    assert kept > 0  # the completions that finished before the stop were stored
    answered = server.stats()["answered"]
    assert kept == answered  # every answer the server gave is in the store
    rest = [r for i, r in enumerate(requests) if i != 150]
    outs = Engine(_backend([server.url], concurrency=4), store, progress=False).generate(
        rest, PARAMS
    )
    assert len(outs) == 199
    assert server.stats()["answered"] == answered + (199 - kept)  # none sent twice


def test_a_request_out_of_retries_fails_alone(mocks, tmp_path):
    server = mocks()
    store = Store(tmp_path / "s.db")
    engine = Engine(_backend([server.url], concurrency=4, max_retries=1), store, progress=False)
    outs = engine.generate(_reqs(40, {7: "FAIL500", 23: "FAIL500"}), PARAMS)
    failed = [i for i, o in enumerate(outs) if o.finish_reason == "error"]
    assert failed == [7, 23]
    errors = [outs[i].error for i in failed]
    assert all("failed after 2 attempt(s)" in e and "HTTP 500" in e for e in errors), errors
    assert store.count_completions() == 38  # a failed request is not stored: a rerun retries it


def test_a_fleet_that_answers_nothing_stops_the_run(mocks):
    server = mocks(error_rate=1.0)
    engine = Engine(_backend([server.url], concurrency=2, max_retries=0), None, progress=False)
    with pytest.raises(GravityError, match=r"the last 2 requests all failed after 1 attempt"):
        engine.generate(_reqs(30), PARAMS)
    assert server.stats()["requests"] < 30  # it stopped, not after asking every row


def test_a_consumer_that_stops_early_stops_the_dispatch(monkeypatch):
    """More answers than the hand-over queue holds, and a consumer that leaves after one: the
    stream closes in moments and its thread ends (it never waits on a full queue)."""
    import threading

    backend = _backend(["http://127.0.0.1:9/v1"], concurrency=8, timeout_s=30)
    sent = []

    async def instant(client, request, params, seed):
        sent.append(seed)
        from gravity.llm.base import Completion

        return Completion(text="x")

    monkeypatch.setattr(backend, "_one", instant)
    before = set(threading.enumerate())
    stream = backend.generate_stream(_reqs(6000), [PARAMS] * 6000)
    next(stream)
    time.sleep(1.0)  # the workers fill the queue meanwhile
    start = time.monotonic()
    stream.close()
    assert time.monotonic() - start < 5
    time.sleep(0.5)
    assert not [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert len(sent) < 6000  # dispatch stopped with the consumer


def _stored(store: Path) -> int:
    """Completions in a store another process is writing (0 before it exists)."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_generate_killed_at_half_resumes_without_sending_a_completed_request_again(mocks, tmp_path):
    """kill -9 of `gravity generate` at about 50% of 300 readers, then a rerun: the requests
    sent again are exactly those the server answered but the store had not kept yet (a few at
    most), and the output equals an uninterrupted run's (ids and texts, byte for byte)."""
    from gravity.profiles import dump_profiles, sample_profiles
    from tests.fakes import child_env

    server = mocks(latency_ms=2, echo=True)
    dump_profiles(sample_profiles("BR", 300, seed=5), tmp_path / "readers.jsonl")
    total = 900  # a scenario, a chosen and a rejected description per reader

    def command(out: Path) -> list[str]:
        return [
            sys.executable, "-m", "gravity", "generate",
            "--profiles", str(tmp_path / "readers.jsonl"), "--out", str(out),
            "--backend.backend", "openai", "--backend.model", "mock",
            "--backend.base-urls", server.url, "--backend.concurrency", "4",
            "--max-items", "1", "--facets", "values", "--chunk-readers", "50",
            "--filters.min-words", "5", "--filters.near-duplicate-threshold", "null",
        ]  # fmt: skip

    run = tmp_path / "run"
    proc = subprocess.Popen(
        command(run), env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while _stored(run / "store.sqlite") < total // 2 and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it was killed"
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    answered, kept = server.stats()["answered"], _stored(run / "store.sqlite")
    assert total // 2 <= kept < total
    assert not (run / "pairs.jsonl").exists()  # nothing half-written is taken for output
    assert answered - kept <= 12  # at most the chunk not yet stored and the requests in flight

    done = subprocess.run(command(run), env=child_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    stats = server.stats()
    assert _stored(run / "store.sqlite") == total
    assert stats["answered"] - answered == total - kept  # the rerun sent only what was missing
    assert stats["repeats"] == answered - kept  # ...and of those, none whose answer was kept
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]

    whole = tmp_path / "whole"
    done = subprocess.run(command(whole), env=child_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("pairs.jsonl", "rejects.jsonl"):
        assert (run / name).read_bytes() == (whole / name).read_bytes(), name
    pairs = (whole / "pairs.jsonl").read_text().splitlines()
    assert len(pairs) == 300
