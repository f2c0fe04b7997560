"""Fleet benchmark: what one gravity process sustains against OpenAI-compatible servers.

    python bench/fleet.py --requests 20000                 # 2 instant servers
    python bench/fleet.py --latency-ms 250 --slow-rate 0.01 --concurrency 64 --concurrency 512
    python bench/fleet.py --error-rate 0.05 --requests 20000
    python bench/fleet.py --readers 600                    # gravity generate, 36 requests a reader

Starts ``--servers`` mock servers on 127.0.0.1 (a bare ASGI app on uvicorn, one process each,
httptools and uvloop where installed: the ``fleet`` extra). Every chat completion is a fixed
text (with ``--readers``: the fixed text and words drawn from a hash of the request, so that
descriptions differ) after ``--latency-ms``, a ``--slow-rate`` share after ``--slow-ms`` (and
every prompt that contains SLOW), a ``--error-rate`` share answered 429 or 500 at random (and
500 always for a prompt that contains FAIL500), 404 for a prompt that contains FATAL;
``/stats`` counts requests, answers, repeats and the most in flight at once, and the servers'
CPU time. Then runs ``gravity llm generate --backend openai`` over ``--requests`` one-line
prompts, or ``gravity generate`` over ``--readers`` synthetic readers, with a fresh store, once
per ``--concurrency``, and prints per run: requests/s (whole command, and sustained: less the
wall time of a one-row run, i.e. start-up), gravity's CPU per request (all of it, and less a
one-row run's CPU), the servers' CPU per request, the idle time of a server connection between
an answer and its next request (p50 and p99 of the worse server: gravity's turnaround, which
includes waiting for its busy event loop and, in ``generate``, for a chunk's next stage), its
peak RSS, the store's size per 1,000 completions and the rows in = written + rejected. Bounded:
every run has a wall-clock limit, and the servers are stopped at the end (also on errors).
Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANSWER = "A fixed answer from the mock server, about as long as a short description."


def serve(
    port: int,
    latency_ms: float,
    slow_rate: float,
    slow_ms: float,
    error_rate: float,
    echo: bool = False,
):
    """One mock server (runs in its own process): a bare ASGI app on uvicorn, with httptools and
    uvloop where they are installed (the ``fleet`` extra). ``echo``: the answer ends with words
    drawn from a hash of the request's messages and seed (distinct requests, distinct texts).

    It also measures gravity's own overhead as the servers see it: for each connection, the
    time it sat idle between sending an answer and receiving its next request (the client
    reading the answer, storing it and sending the next one)."""
    import asyncio
    import hashlib

    import uvicorn

    try:
        import orjson

        loads, dumps = orjson.loads, orjson.dumps
    except ImportError:  # the stdlib is slower, not wrong
        loads, dumps = json.loads, lambda obj: json.dumps(obj).encode()

    rng = random.Random(port)
    stats = {"requests": 0, "answered": 0, "in_flight": 0, "max_in_flight": 0, "repeats": 0}
    answered: set[bytes] = set()  # digests of the requests answered: a repeat is one sent again
    idle: list[float] = []  # per request on a kept-alive connection: seconds since its last answer
    last_answer: dict[tuple, float] = {}  # connection -> when its last answer went out
    words = [
        "river",
        "lantern",
        "harvest",
        "quiet",
        "journey",
        "letters",
        "courage",
        "winter",
        "market",
        "garden",
    ]

    async def respond(send, status: int, payload: dict) -> None:
        body = dumps(payload)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def chat(body: dict) -> tuple[int, dict]:
        stats["requests"] += 1
        text = body["messages"][-1]["content"]
        if "FATAL" in text:  # a request no server can answer: the run must stop
            return 404, {"error": {"message": "no such model"}}
        if "FAIL500" in text:
            return 500, {"error": {"message": "always fails"}}
        if rng.random() < error_rate:
            return rng.choice([429, 500]), {"error": {"message": "busy"}}
        delay = slow_ms if ("SLOW" in text or rng.random() < slow_rate) else latency_ms
        stats["in_flight"] += 1
        stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        try:
            if delay:
                await asyncio.sleep(delay / 1000)
        finally:
            stats["in_flight"] -= 1
        stats["answered"] += 1
        key = json.dumps([body["messages"], body.get("seed")], sort_keys=True).encode()
        digest = hashlib.sha256(key).digest()
        stats["repeats"] += digest in answered
        answered.add(digest)
        answer = ANSWER
        if echo:
            answer += " " + " ".join(words[b % len(words)] for b in digest[:6]) + "."
        return 200, {
            "choices": [{"message": {"content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(text) // 4, "completion_tokens": 14},
        }

    def summary() -> dict:
        out = dict(stats)
        cpu = os.times()
        out["cpu_s"] = cpu.user + cpu.system
        ordered = sorted(idle)
        for name, q in (("idle_p50_ms", 0.5), ("idle_p99_ms", 0.99)):
            out[name] = round(ordered[int(q * (len(ordered) - 1))] * 1000, 3) if ordered else None
        out["idle_samples"] = len(ordered)
        return out

    async def app(scope, receive, send):
        if scope["type"] != "http":  # lifespan: nothing to set up
            return
        path, client = scope["path"], scope.get("client")
        if path == "/v1/chat/completions":
            arrived = time.monotonic()
            if client in last_answer:
                idle.append(arrived - last_answer[client])
            chunks, more = [], True
            while more:
                message = await receive()
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            status, payload = await chat(loads(b"".join(chunks)))
            await respond(send, status, payload)
            last_answer[client] = time.monotonic()
        elif path == "/v1/models":
            await respond(send, 200, {"data": [{"id": "mock"}]})
        elif path == "/stats":
            await respond(send, 200, summary())
        elif path == "/reset":  # between runs: the counters and samples start again
            stats.update(requests=0, answered=0, max_in_flight=0, repeats=0)
            idle.clear()
            last_answer.clear()
            answered.clear()
            await respond(send, 200, {"ok": True})
        else:
            await respond(send, 404, {"error": {"message": f"no route {path}"}})

    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="error", access_log=False, lifespan="off"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(port: int, limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"mock server on port {port} did not start")


def _get(port: int, path: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


def _child(cmd: list[str], limit_s: float) -> dict:
    """Runs ``cmd``; its exit code, stdout, last stderr line, wall time and its own CPU time
    and peak RSS (``wait4``: this child's, not the largest child's so far)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > limit_s:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stderr = err.read().decode(errors="replace").strip().splitlines()
        return {
            "exit": proc.returncode,
            "stdout": out.read().decode(errors="replace"),
            "error": stderr[-1] if proc.returncode and stderr else "",
            "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        }


def _llm_command(urls: list[str], prompts: Path, store: Path, concurrency: int) -> list[str]:
    cmd = [sys.executable, "-m", "gravity", "llm", "generate", "--backend", "openai"]
    cmd += ["--model", "mock", "--prompt-file", str(prompts), "--store", str(store), "--json"]
    cmd += ["--max-new-tokens", "32", "--concurrency", str(concurrency)]
    for url in urls:
        cmd += ["--base-urls", url]
    return cmd


def _generate_command(
    urls: list[str], readers: Path, out: Path, concurrency: int, chunk: int, dedupe: bool
) -> list[str]:
    """``gravity generate`` over ``readers`` with the default synthesis (four facets, three books:
    12 pairs, 36 requests per reader: a scenario, the chosen and the rejected description)."""
    import yaml

    config = {
        "chunk_readers": chunk,
        # the mock's answers are short; the near-duplicate filter (embeddings on this machine's
        # CPU) only with --near-duplicates
        "filters": {"min_words": 5, **({} if dedupe else {"near_duplicate_threshold": None})},
        "backend": {
            "backend": "openai",
            "model": "mock",
            "base_urls": urls,
            "concurrency": concurrency,
        },
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "gravity", "generate", "--profiles", str(readers)]
    return [*cmd, "--out", str(out), "--config", str(path)]


def _run(ports: list[int], cmd: list[str], rows_in: int, store: Path, limit_s: float) -> dict:
    """One gravity command against fresh server counters: what it sustained and cost."""
    for port in ports:
        _get(port, "/reset")
    before = [_get(port, "/stats") for port in ports]
    done = _child(cmd, limit_s)
    after = [_get(port, "/stats") for port in ports]
    sent = sum(a["requests"] for a in after)
    answered = sum(a["answered"] for a in after)
    idle50 = [a["idle_p50_ms"] for a in after if a["idle_p50_ms"] is not None]
    idle99 = [a["idle_p99_ms"] for a in after if a["idle_p99_ms"] is not None]
    return {
        "exit": done["exit"],
        "error": done["error"],
        "stdout": done["stdout"],
        "requests_sent": sent,
        "answered": answered,
        "rows_in": rows_in,
        "wall_s": round(done["wall_s"], 2),
        "requests_per_s": round(answered / done["wall_s"], 1),
        "gravity_cpu_s": round(done["cpu_s"], 3),
        "gravity_cpu_ms_per_request": round(1000 * done["cpu_s"] / max(answered, 1), 3),
        "servers_cpu_ms_per_request": round(
            1000 * sum(a["cpu_s"] - b["cpu_s"] for a, b in zip(after, before)) / max(sent, 1), 3
        ),
        # A connection's idle time between an answer and its next request, at the servers:
        # the worse server's median and 99th percentile.
        "overhead_p50_ms": max(idle50) if idle50 else None,
        "overhead_p99_ms": max(idle99) if idle99 else None,
        "peak_rss_mb": done["peak_rss_mb"],
        "store_kb_per_1000": round(store.stat().st_size / 1024 / max(answered, 1) * 1000, 1)
        if store.exists()
        else None,
    }


def _llm_rows(result: dict) -> tuple[int, int]:
    """Written and rejected rows of ``gravity llm generate --json``."""
    lines = [json.loads(line) for line in result["stdout"].splitlines() if line.startswith("{")]
    rejected = sum(1 for r in lines if r.get("finish_reason") == "error")
    return len(lines) - rejected, rejected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=3000, help="llm: one-line prompts")
    parser.add_argument(
        "--readers",
        type=int,
        help="run `gravity generate` over this many synthetic readers (36 requests each) "
        "instead of `gravity llm generate` over --requests prompts",
    )
    parser.add_argument("--chunk-readers", type=int, default=100, help="with --readers")
    parser.add_argument(
        "--near-duplicates",
        action="store_true",
        help="with --readers: keep the near-duplicate filter on (it embeds every description "
        "on this machine's CPU)",
    )
    parser.add_argument("--concurrency", type=int, action="append")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--slow-rate", type=float, default=0.0)
    parser.add_argument("--slow-ms", type=float, default=5000.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--limit-s", type=float, default=600.0, help="Per run.")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.latency_ms, args.slow_rate, args.slow_ms, args.error_rate, args.echo)
        return
    ports = [_free_port() for _ in range(args.servers)]
    flags = ["--latency-ms", str(args.latency_ms), "--slow-rate", str(args.slow_rate)]
    flags += ["--slow-ms", str(args.slow_ms), "--error-rate", str(args.error_rate)]
    flags += ["--echo"] if args.readers else []  # distinct descriptions for distinct requests
    servers = [
        subprocess.Popen([sys.executable, __file__, "--serve", str(p), *flags]) for p in ports
    ]
    try:
        for p in ports:
            _wait(p)
        import importlib.util

        stack = {
            "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
            "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        }
        print(json.dumps({"servers": args.servers, "server_stack": stack, "cpus": os.cpu_count()}))
        urls = [f"http://127.0.0.1:{p}/v1" for p in ports]
        tmp = Path(tempfile.mkdtemp(prefix="gravity-fleet-"))
        if args.readers:
            sys.path.insert(0, str(Path(__file__).parent))
            from memory import write_readers

            write_readers(tmp / "readers.jsonl", args.readers)
            write_readers(tmp / "one.jsonl", 1)
            rows_in = args.readers

            def command(name: str, concurrency: int, n: int) -> tuple[list[str], Path]:
                readers = tmp / ("readers.jsonl" if n > 1 else "one.jsonl")
                out = tmp / name
                cmd = _generate_command(
                    urls, readers, out, concurrency, args.chunk_readers, args.near_duplicates
                )
                return cmd, out / "store.sqlite"
        else:
            (tmp / "prompts.txt").write_text(
                "".join(f"Describe item number {i} in one line.\n" for i in range(args.requests))
            )
            (tmp / "one.txt").write_text("Describe one item in one line.\n")
            rows_in = args.requests

            def command(name: str, concurrency: int, n: int) -> tuple[list[str], Path]:
                prompts = tmp / ("prompts.txt" if n > 1 else "one.txt")
                store = tmp / f"{name}.sqlite"
                return _llm_command(urls, prompts, store, concurrency), store

        # The wall time of a one-row run: start-up (imports, store) that a long run pays once.
        one = [
            _run(ports, command(f"one{k}", 1, 1)[0], 1, Path("/nonexistent"), args.limit_s)
            for k in range(2)
        ]
        startup = min(r["wall_s"] for r in one)
        startup_cpu_s = min(r["gravity_cpu_s"] for r in one)  # a one-row run: start-up, mostly
        for concurrency in args.concurrency or [8, 64, 256]:
            cmd, store = command(f"c{concurrency}", concurrency, rows_in)
            row = _run(ports, cmd, rows_in, store, args.limit_s)
            stdout = row.pop("stdout")
            if args.readers:
                summary = tmp / f"c{concurrency}" / "summary.json"
                counts = json.loads(summary.read_text()) if summary.exists() else {}
                row["written"], row["rejected"] = counts.get("written"), counts.get("rejected")
                row["rows_in"] = counts.get("rows_in", rows_in)
            else:
                row["written"], row["rejected"] = _llm_rows({"stdout": stdout})
            row = {"mode": "generate" if args.readers else "llm", "concurrency": concurrency, **row}
            row["startup_s"] = round(startup, 2)
            row["gravity_cpu_ms_per_request_less_startup"] = round(
                1000 * (row["gravity_cpu_s"] - startup_cpu_s) / max(row["answered"], 1), 3
            )
            row["sustained_requests_per_s"] = round(
                (row["answered"] - 1) / max(row["wall_s"] - startup, 1e-3), 1
            )
            print(json.dumps(row), flush=True)
    finally:
        for s in servers:
            s.terminate()
        for s in servers:
            s.wait(timeout=10)


if __name__ == "__main__":
    main()
