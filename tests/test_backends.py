"""Real backends on the embedded model: transformers, llamacpp, and openai against a real
OpenAI-compatible server (llama-cpp-python's) on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from pydantic import BaseModel

from gravity.errors import GravityError
from gravity.llm import (
    BACKENDS,
    BackendConfig,
    ChatRequest,
    Completion,
    SamplingParams,
    make_backend,
)
from gravity.llm.embedded import embedded_gguf
from gravity.llm.engine import Engine, Parsed, Reject
from gravity.store import Store
from gravity.synth import GenerateConfig, synthesize
from gravity.synth.config import FilterConfig
from tests.fakes import WriterBackend

HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None
needs_llama = pytest.mark.skipif(not HAS_LLAMA, reason="needs the llamacpp extra")

PROMPTS = [
    "Name a fruit.",
    "Write one sentence about the sea, the wind and a small boat sailing home at night.",
    "Say hello.",
]
GREEDY = SamplingParams(max_new_tokens=24, temperature=0.0)


class Book(BaseModel):
    title: str
    genre: str


def _reqs(prompts=PROMPTS):
    return [ChatRequest.from_prompt(p) for p in prompts]


def test_unknown_backend_lists_valid():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="'transformers', 'llamacpp', 'openai' or 'vllm'"):
        BackendConfig(backend="tgi")
    # A config built without validation is still refused by name.
    with pytest.raises(
        GravityError, match="unknown backend 'tgi'; valid: transformers, llamacpp, openai, vllm"
    ):
        make_backend(BackendConfig.model_construct(backend="tgi"))
    assert set(BACKENDS) == {"transformers", "llamacpp", "openai", "vllm"}


@pytest.fixture(scope="module")
def hf_fp32():
    with make_backend(BackendConfig(dtype="float32")) as backend:
        yield backend


def test_transformers_generates_in_input_order(hf_fp32):
    batched = hf_fp32.generate(_reqs(), GREEDY)
    assert len(batched) == 3 and all(c.text.strip() for c in batched)
    assert all(c.completion_tokens > 0 and c.prompt_tokens > 10 for c in batched)
    # Left padding: each batched answer equals the same prompt generated alone.
    alone = [hf_fp32.generate([r], GREEDY)[0].text for r in _reqs()]
    assert [c.text for c in batched] == alone


def test_transformers_seeds_repeat(hf_fp32):
    params = SamplingParams(max_new_tokens=20, temperature=1.0, seed=11)
    a = hf_fp32.generate(_reqs()[:2], params)
    b = hf_fp32.generate(_reqs()[:2], params)
    c = hf_fp32.generate(_reqs()[:2], params.model_copy(update={"seed": 12}))
    assert [x.text for x in a] == [x.text for x in b]
    assert [x.text for x in a] != [x.text for x in c]


def test_transformers_length_and_stop(hf_fp32):
    (long,) = hf_fp32.generate(
        _reqs(["Write a long story about a dragon."]),
        SamplingParams(max_new_tokens=5, temperature=0),
    )
    assert long.finish_reason == "length" and long.completion_tokens == 5
    (cut,) = hf_fp32.generate(
        _reqs(["Count from 1 to 10 separated by commas."]),
        SamplingParams(max_new_tokens=30, temperature=0, stop=("5",)),
    )
    assert "5" not in cut.text and cut.finish_reason == "stop"


def test_default_backend_is_embedded_fp32_on_cpu():
    backend = make_backend(BackendConfig(device="cpu"))
    fp = backend.fingerprint()
    assert fp["backend"] == "transformers" and fp["model"] == "smollm2-135m-instruct"
    assert fp["dtype"] == "float32"  # bf16 is slower on CPUs without native bf16 arithmetic
    assert len(fp["revision"]) == 16


def test_missing_model_directory_is_clear():
    with pytest.raises(GravityError, match="does not exist"):
        make_backend(BackendConfig(model="./no/such/model")).load()


@needs_llama
def test_llamacpp_build_is_portable_and_has_no_amx():
    """The installed llama.cpp was built without AMX kernels (they segfault on some virtualized
    AMX CPUs) and, on x86, without AVX-512 (so it runs on CPUs that lack it); checked from the
    build's own feature list, so it holds whatever CPU runs the test."""
    import platform

    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    assert "AMX" not in info, info
    if platform.machine() in {"x86_64", "AMD64"}:
        assert "AVX2 = 1" in info and "AVX512" not in info, info


@needs_llama
def test_llamacpp_worker_loads_with_extra_buffer_types_off():
    """The params the worker really loaded the model with have weight repacking (llama.cpp's
    extra buffer types, where its AMX path lives) off; llama.cpp's own default is on."""
    import llama_cpp

    assert llama_cpp.llama_model_default_params().use_extra_bufts is True
    backend = make_backend(BackendConfig(backend="llamacpp", n_threads=1))
    try:
        backend.load()
        assert backend.info["use_extra_bufts"] is False
        assert "AMX" not in backend.info["system_info"]
        worker = backend.worker.proc
        assert worker.pid != os.getpid() and worker.poll() is None
        backend.generate(_reqs()[:1], GREEDY)
        backend.generate(_reqs()[1:2], GREEDY)
        assert backend.worker.proc is worker  # one worker, one model load, for every batch
    finally:
        backend.close()
    assert worker.poll() == 0  # close() ended the worker cleanly


@needs_llama
def test_llamacpp_generates_repeats_and_constrains_json():
    with make_backend(BackendConfig(backend="llamacpp", n_threads=1)) as backend:
        params = SamplingParams(max_new_tokens=24, temperature=0.8, seed=3)
        a = backend.generate(_reqs(), params)
        b = backend.generate(list(reversed(_reqs())), params)
        assert [x.text for x in a] == [x.text for x in reversed(b)]  # per-request seed, any order
        assert all(x.text.strip() and x.completion_tokens > 0 for x in a)
        engine = Engine(backend, None, progress=False)
        (out,) = engine.generate_structured(
            _reqs(["Give the title and genre of the novel Dracula."]),
            SamplingParams(max_new_tokens=60),
            Book,
        )
        # Grammar-constrained: the raw text is pure JSON (a 135M model may still run out of
        # tokens inside a string, which the engine's retry absorbs).
        assert isinstance(out, Parsed) and out.value.title
        assert json.loads(out.completion.text)["title"] == out.value.title


@needs_llama
def test_llamacpp_prompt_over_context_is_one_failed_request():
    backend = make_backend(BackendConfig(backend="llamacpp", n_ctx=256, n_threads=1))
    try:
        prompts = ["Say hello.", "Repeat this: " + "tree " * 400, "Name a colour."]
        outs = backend.generate(_reqs(prompts), SamplingParams(max_new_tokens=8, temperature=0))
    finally:
        backend.close()
    assert [o.finish_reason for o in outs][1] == "error" and outs[1].text == ""
    assert "context window" in outs[1].error
    assert outs[0].text.strip() and outs[2].text.strip() and outs[0].error is None


def _gravity(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "gravity", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@needs_llama
def test_llamacpp_worker_segfault_is_one_line_keeps_completions_and_resumes(tmp_path):
    """A real SIGSEGV (a native null-pointer read) in the worker after 2 of 5 requests of one
    batch: the user's command prints one line naming the backend and the signal and exits 2;
    the 2 finished completions are in the store; the rerun answers them from it and makes the
    other 3."""
    from gravity.llm.llamacpp import CRASH_AFTER_ENV

    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "\n".join(f"Name a {w}." for w in ["fruit", "tree", "river", "city", "bird"])
    )
    store = tmp_path / "store.db"
    args = ["llm", "generate", "--prompt-file", str(prompts), "--backend", "llamacpp"]
    args += ["--max-new-tokens", "8", "--store", str(store), "--json"]
    # OpenMP's idle threads sleep instead of spinning: a shared CI machine stays usable.
    crashed = _gravity(*args, env={CRASH_AFTER_ENV: "2", "OMP_WAIT_POLICY": "passive"})
    assert crashed.returncode == 2, crashed.stderr
    lines = crashed.stderr.strip().splitlines()
    assert "Traceback" not in crashed.stderr
    assert lines[-1].startswith("error: llamacpp backend worker died with SIGSEGV during a batch")
    assert "after 2 of them" in lines[-1]
    assert crashed.stdout == ""  # nothing half-printed
    assert Store(store).count_completions() == 2

    rerun = _gravity(*args, env={"OMP_WAIT_POLICY": "passive"})
    assert rerun.returncode == 0, rerun.stderr
    records = [json.loads(line) for line in rerun.stdout.splitlines()]
    assert len(records) == 5 and all(r["text"].strip() for r in records)
    assert sum(r["cached"] for r in records) == 2
    assert Store(store).count_completions() == 5


class RefusingWriter(WriterBackend):
    """Refuses, as a server answering HTTP 400 would, each request whose prompt holds ``marker``."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def generate(self, requests, params, seeds=None):
        outs = super().generate(requests, params, seeds)
        refused = Completion(text="", finish_reason="error", error="HTTP 400: prompt too long")
        return [
            refused if self.marker in r.messages[-1].content else out
            for r, out in zip(requests, outs)
        ]


def test_refused_requests_are_counted_rejects_in_the_synthesis_summary(tmp_path, example_profiles):
    backend = RefusingWriter("Reader (values)")
    store = Store(tmp_path / "store.sqlite")
    cfg = GenerateConfig(
        max_items=2, filters=FilterConfig(min_words=5, near_duplicate_threshold=None)
    )
    result = synthesize(
        example_profiles, cfg, tmp_path / "run", engine=Engine(backend, store, progress=False)
    )
    s = result.summary
    refused = [r for r in result.rejects if r["reason"].endswith("backend_error")]
    marked = [r for r in backend.seen if "Reader (values)" in r.messages[-1].content]
    assert refused and len(refused) == len(marked)  # one reject per refusal, no retries
    assert all(r["detail"] == "HTTP 400: prompt too long" for r in refused)
    assert s["rows_in"] == s["written"] + s["rejected"] and s["written"] > 0
    assert sum(v for k, v in s["rejects_by_reason"].items() if k.endswith("backend_error")) == len(
        refused
    )
    assert store.count_completions() == len(backend.seen) - len(marked)


# --- openai backend against real servers -------------------------------------------------


@pytest.fixture
def servers(tmp_path):
    if not HAS_LLAMA:
        pytest.skip("needs llama-cpp-python[server]")
    pytest.importorskip("uvicorn")
    from tests.servers import LlamaServer

    started = [LlamaServer(embedded_gguf(), tmp_path) for _ in range(2)]
    try:
        yield [s.wait_ready() for s in started]
    finally:
        for s in started:
            s.kill()


@pytest.fixture
def server(tmp_path):
    if not HAS_LLAMA:
        pytest.skip("needs llama-cpp-python[server]")
    pytest.importorskip("uvicorn")
    from tests.servers import LlamaServer

    started = LlamaServer(embedded_gguf(), tmp_path)
    try:
        yield started.wait_ready()
    finally:
        started.kill()


def _openai(urls, **kw):
    return make_backend(
        BackendConfig(
            backend="openai", model="smollm2", base_urls=urls, json_mode="json_object", **kw
        )
    )


@pytest.mark.server
def test_openai_spreads_over_urls_and_keeps_order(servers, tmp_path):
    backend = _openai([s.url for s in servers], concurrency=2)
    prompts = [f"Name an animal that starts with the letter {c}." for c in "ABCDEF"]
    store = Store(tmp_path / "s.db")
    engine = Engine(backend, store, progress=False)
    outs = engine.generate(_reqs(prompts), SamplingParams(max_new_tokens=12, seed=1))
    assert len(outs) == 6 and all(o.text.strip() for o in outs)
    assert set(backend.url_counts) == {s.url for s in servers}
    assert all(count >= 2 for count in backend.url_counts.values())
    # Order: each answer equals the same prompt sent alone (seeded, same server build).
    solo = _openai([servers[0].url]).generate(
        _reqs(prompts[4:5]), SamplingParams(max_new_tokens=12, seed=1)
    )
    assert outs[4].text == solo[0].text
    again = Engine(_openai([s.url for s in servers]), store, progress=False)
    assert all(
        o.cached for o in again.generate(_reqs(prompts), SamplingParams(max_new_tokens=12, seed=1))
    )
    assert again.calls == 0


@pytest.mark.server
def test_openai_structured_output(servers):
    engine = Engine(_openai([servers[0].url]), None, progress=False)
    (out,) = engine.generate_structured(
        _reqs(["Give the title and genre of the novel Emma."]),
        SamplingParams(max_new_tokens=60),
        Book,
    )
    assert isinstance(out, Parsed) and out.value.genre


@pytest.mark.server
def test_openai_over_context_prompt_is_one_reject_the_others_are_stored(server, tmp_path):
    """One prompt over the server's context (2,048 tokens) in a batch of three: that row is a
    reject carrying the server's reason, not retried and not stored; the other two complete and
    are stored; a wrong URL path (404, no request can pass) still stops the run."""
    backend = _openai([server.url], concurrency=3)
    store = Store(tmp_path / "s.db")
    engine = Engine(backend, store, progress=False)
    prompts = ["Name a fruit.", "Repeat this: " + "tree " * 2500, "Name a colour."]
    results = engine.generate_parsed(
        _reqs(prompts),
        SamplingParams(max_new_tokens=8, seed=1),
        lambda out, _i: out.text or Reject("empty output", out.text, "empty"),
        max_attempts=3,
    )
    assert isinstance(results[0], Parsed) and isinstance(results[2], Parsed)
    bad = results[1]
    assert isinstance(bad, Reject) and bad.kind == "backend_error"
    assert bad.reason.startswith("HTTP 400: ") and "context" in bad.reason
    assert engine.calls == 1 and backend.refused == 1  # refused once, never retried
    assert store.count_completions() == 2
    wrong = _openai([server.url.removesuffix("/v1") + "/nope"], max_retries=0)
    with pytest.raises(GravityError, match="answered HTTP 404"):
        wrong.generate(_reqs(["hi"]), SamplingParams(max_new_tokens=4))


@pytest.mark.server
def test_openai_fails_over_when_a_server_dies(servers):
    backend = _openai([s.url for s in servers], concurrency=2, max_retries=6)
    prompts = [f"Write a sentence about the number {i}." for i in range(10)]
    killer = threading.Timer(1.0, servers[1].kill)
    killer.start()
    start = time.monotonic()
    outs = backend.generate(_reqs(prompts), SamplingParams(max_new_tokens=24, seed=2))
    killer.join()
    assert len(outs) == 10 and all(o.text.strip() for o in outs)
    assert servers[1].proc.poll() is not None  # it really died during the run
    assert backend.url_counts[servers[0].url] >= 5
    assert time.monotonic() - start < 120


@pytest.mark.server
def test_openai_timeout_and_dead_url_errors(servers):
    slow = _openai([servers[0].url], timeout_s=0.05, max_retries=1)
    with pytest.raises(GravityError, match=r"failed after 2 attempt\(s\).*(Timeout)"):
        slow.generate(
            _reqs(["Write a long essay about rivers."]), SamplingParams(max_new_tokens=200)
        )
    dead = _openai(["http://127.0.0.1:9/v1"], max_retries=0)
    with pytest.raises(GravityError, match="ConnectError"):
        dead.generate(_reqs(["hi"]), SamplingParams(max_new_tokens=4))


@pytest.mark.server
def test_openai_sends_api_key_from_env_only(servers, monkeypatch):
    monkeypatch.setenv("GRAVITY_TEST_KEY", "sk-test-123")
    backend = _openai([servers[0].url], api_key_env="GRAVITY_TEST_KEY")
    assert backend._headers() == {
        "Content-Type": "application/json",
        "Authorization": "Bearer sk-test-123",
    }
    monkeypatch.delenv("GRAVITY_TEST_KEY")
    assert "Authorization" not in backend._headers()
    assert "sk-test" not in str(backend.fingerprint())
    assert backend.generate(_reqs(["hi"]), SamplingParams(max_new_tokens=4))[0].finish_reason in {
        "stop",
        "length",
    }


@pytest.mark.gpu
def test_vllm_backend_generates():
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    with make_backend(BackendConfig(backend="vllm", gpu_memory_utilization=0.3)) as backend:
        outs = backend.generate(_reqs(), SamplingParams(max_new_tokens=16, seed=1))
        assert len(outs) == 3 and all(o.text for o in outs)
        engine = Engine(backend, None, progress=False)
        (out,) = engine.generate_structured(
            _reqs(["Title and genre of Emma?"]), SamplingParams(max_new_tokens=60), Book
        )
        assert isinstance(out, Parsed)


@pytest.mark.parametrize(
    ("capability", "expected"), [((7, 5), "float16"), ((8, 0), "bfloat16"), ((9, 0), "bfloat16")]
)
def test_auto_dtype_on_gpu_follows_native_bf16(monkeypatch, capability, expected):
    """bf16 only where the GPU computes it natively (compute capability 8.0 on); older cards
    (T4, V100) only emulate it, so fp16. The device asked for is the one checked."""
    import torch

    from gravity.llm.hf import resolve_dtype

    asked = []

    def capability_of(device):
        asked.append(str(device))
        return capability

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability_of)
    assert resolve_dtype("auto", "cuda:1") == expected and asked == ["cuda:1"]
    assert (
        resolve_dtype("auto", "cpu") == "float32" and resolve_dtype("float16", "cpu") == "float16"
    )


def _fake_vllm(monkeypatch, calls: list, with_cleanup: bool = True):
    """A stand-in ``vllm`` package (vLLM does not install here): records the release steps."""
    import types
    import weakref

    vllm = types.ModuleType("vllm")
    distributed = types.ModuleType("vllm.distributed")

    class Core:
        def shutdown(self):
            calls.append("engine_core.shutdown")

    class LLM:
        def __init__(self, **kwargs):
            self.llm_engine = types.SimpleNamespace(engine_core=Core())
            calls.append("LLM")
            LLM.last = weakref.ref(self)

    def cleanup():
        calls.append(("cleanup_dist_env_and_memory", LLM.last() is None))

    vllm.LLM = LLM
    if with_cleanup:
        distributed.cleanup_dist_env_and_memory = cleanup
    vllm.distributed = distributed
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.distributed", distributed)
    return LLM


def test_vllm_backend_close_frees_the_engine_for_the_next_stage(monkeypatch):
    """close() stops vLLM's engine core, drops the LLM object (garbage before the clean-up
    runs) and calls vLLM's cleanup_dist_env_and_memory (model-parallel groups, process group,
    gc, CUDA cache)."""
    calls: list = []
    llm_class = _fake_vllm(monkeypatch, calls)
    with make_backend(BackendConfig(backend="vllm", model="org/model")) as backend:
        backend.load()
        assert backend.llm is llm_class.last()
    assert calls == ["LLM", "engine_core.shutdown", ("cleanup_dist_env_and_memory", True)]
    assert backend.llm is None and llm_class.last() is None


def test_vllm_backend_close_without_vllms_cleanup_empties_the_cuda_cache(monkeypatch):
    import torch

    calls: list = []
    _fake_vllm(monkeypatch, calls, with_cleanup=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    backend = make_backend(BackendConfig(backend="vllm", model="org/model"))
    backend.load()
    backend.close()
    assert calls == ["LLM", "engine_core.shutdown", "empty_cache"]


def test_openai_response_bodies_decode_as_the_stdlib_did():
    """orjson reads the answers; a body it refuses (invalid UTF-8 inside a string) still reads
    as the stdlib read it after a lossy decode, and a body that is not JSON is a ValueError (a
    retryable transport error)."""
    from gravity.llm.openai_compat import _Response

    good = _Response(200, '{"choices": [{"message": {"content": "caf\u00e9 \u65e5"}}]}'.encode())
    assert good.json()["choices"][0]["message"]["content"] == "caf\u00e9 \u65e5"
    lossy = _Response(200, b'{"choices": [{"message": {"content": "a\xff b"}}]}')
    assert lossy.json()["choices"][0]["message"]["content"] == "a\ufffd b"
    with pytest.raises(ValueError):
        _Response(200, b"<html>busy</html>").json()


def test_openai_request_that_json_cannot_carry_is_one_line_error():
    """A seed past 64 bits cannot be encoded: a GravityError, not a TypeError traceback."""
    backend = _openai(["http://127.0.0.1:9/v1"], max_retries=0)
    with pytest.raises(GravityError, match="cannot be sent as JSON"):
        backend.generate(_reqs(["hi"]), SamplingParams(max_new_tokens=4, seed=2**70))
