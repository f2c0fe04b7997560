"""Fleet benchmark: what one gravity process sustains against OpenAI-compatible servers.

    python bench/fleet.py                                  # 2 instant servers, 3,000 requests
    python bench/fleet.py --latency-ms 250 --slow-rate 0.01 --concurrency 64 --concurrency 512
    python bench/fleet.py --error-rate 0.05 --requests 2000

Starts ``--servers`` mock servers on 127.0.0.1 (uvicorn + starlette, one process each; every
chat completion is a fixed text after ``--latency-ms``, a ``--slow-rate`` share after
``--slow-ms`` (and every prompt that contains SLOW), a ``--error-rate`` share answered 429 or
500 at random (and 500 always for a prompt that contains FAIL500), 404 for a prompt that
contains FATAL; ``/stats`` counts requests, answers and
the most in flight at once), then runs
``gravity llm generate --backend openai`` over ``--requests`` one-line prompts with a fresh
store, once per ``--concurrency``, and prints per run: requests/s (whole command, and sustained:
less the wall time of a one-request run, i.e. start-up), gravity's CPU seconds per
request, its peak RSS, the store's size per 1,000 requests and the rows in = written +
rejected. Bounded: every run has a wall-clock limit, and the servers are stopped at the end
(also on errors). Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
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
    """One mock server (runs in its own process). ``echo``: the answer ends with words drawn
    from a hash of the request's messages and seed (distinct requests, distinct texts)."""
    import asyncio
    import hashlib

    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    rng = random.Random(port)
    stats = {"requests": 0, "answered": 0, "in_flight": 0, "max_in_flight": 0, "repeats": 0}
    answered: set[bytes] = set()  # digests of the requests answered: a repeat is one sent again
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

    async def models(_request):
        return JSONResponse({"data": [{"id": "mock"}]})

    async def counts(_request):
        return JSONResponse(stats)

    async def chat(request):
        body = await request.json()
        stats["requests"] += 1
        text = body["messages"][-1]["content"]
        if "FATAL" in text:  # a request no server can answer: the run must stop
            return JSONResponse({"error": {"message": "no such model"}}, status_code=404)
        if "FAIL500" in text:
            return JSONResponse({"error": {"message": "always fails"}}, status_code=500)
        if rng.random() < error_rate:
            return JSONResponse({"error": {"message": "busy"}}, status_code=rng.choice([429, 500]))
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
        return JSONResponse(
            {
                "choices": [{"message": {"content": answer}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(str(body)) // 4, "completion_tokens": 14},
            }
        )

    app = Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/stats", counts),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)


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


def _run(urls: list[str], prompts: Path, concurrency: int, limit_s: float) -> dict:
    store = Path(tempfile.mkdtemp()) / "store.sqlite"
    cmd = [
        sys.executable,
        "-m",
        "gravity",
        "llm",
        "generate",
        "--backend",
        "openai",
        "--model",
        "mock",
        "--prompt-file",
        str(prompts),
        "--store",
        str(store),
        "--json",
        "--max-new-tokens",
        "32",
        "--concurrency",
        str(concurrency),
    ]
    for url in urls:
        cmd += ["--base-urls", url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=limit_s,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    n = len(prompts.read_text().splitlines())
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    written = sum(1 for r in lines if r.get("finish_reason") != "error")
    rejected = sum(1 for r in lines if r.get("finish_reason") == "error")
    return {
        "concurrency": concurrency,
        "exit": proc.returncode,
        "error": proc.stderr.strip().splitlines()[-1] if proc.returncode else "",
        "requests": n,
        "wall_s": round(wall, 2),
        "requests_per_s": round(n / wall, 1),
        "cpu_s_per_request": round(
            (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / n, 5
        ),
        "peak_rss_mb_so_far": round(after.ru_maxrss / 1024, 1),  # largest finished child yet
        "store_kb_per_1000": round(store.stat().st_size / 1024 / n * 1000, 1)
        if store.exists()
        else None,
        "in": n,
        "written": written,
        "rejected": rejected,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=3000)
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
    servers = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                str(p),
                "--latency-ms",
                str(args.latency_ms),
                "--slow-rate",
                str(args.slow_rate),
                "--slow-ms",
                str(args.slow_ms),
                "--error-rate",
                str(args.error_rate),
            ]
        )
        for p in ports
    ]
    try:
        for p in ports:
            _wait(p)
        prompts = Path(tempfile.mkdtemp()) / "prompts.txt"
        prompts.write_text(
            "".join(f"Describe item number {i} in one line.\n" for i in range(args.requests))
        )
        urls = [f"http://127.0.0.1:{p}/v1" for p in ports]
        # The wall time of a one-request run: start-up (imports, store) that a long run pays once.
        one = Path(tempfile.mkdtemp()) / "one.txt"
        one.write_text("Describe one item in one line.\n")
        startup = min(_run(urls, one, 1, args.limit_s)["wall_s"] for _ in range(2))
        for concurrency in args.concurrency or [8, 64, 256]:
            row = _run(urls, prompts, concurrency, args.limit_s)
            row["startup_s"] = round(startup, 2)
            row["sustained_requests_per_s"] = round(
                (row["requests"] - 1) / max(row["wall_s"] - startup, 1e-3), 1
            )
            print(json.dumps(row), flush=True)
    finally:
        for s in servers:
            s.terminate()
        for s in servers:
            s.wait(timeout=10)


if __name__ == "__main__":
    main()
