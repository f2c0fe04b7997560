"""Memory benchmark: peak RSS of `gravity generate` and `gravity export` as readers grow.

    python bench/memory.py                                   # 10k and 100k readers
    python bench/memory.py --readers 10000 --readers 1000000 # the 1M run (long on 2 cores)
    python bench/memory.py --resume 100000                   # kill -9 at half, rerun, compare

For each ``--readers`` N: writes N synthetic readers to a JSONL file (in batches, in an order
that is not the id order, so the reader stream has to sort), then runs in a fresh process the
path `gravity generate` takes (``ReaderStream`` -> ``synthesize`` with the folder's store)
against an instant in-process backend (a scenario, then descriptions whose words follow the
seed; no HTTP), one pair per reader (one book, one facet), then `gravity export` (jsonl) of
the result. Prints per N: peak RSS of each process, wall time, rows in = written + rejected,
the store's bytes per completion, and the ratio of each peak to the smallest N's.

The goal of issue 24: the 1M run's peak at most 1.5x the 10k run's (flat in readers).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WATCH = r"""
import threading, time
ANON = [0]  # peak anonymous memory (MB): RSS less mapped files (the export's Arrow files)
def _watch():
    while True:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    ANON[0] = max(ANON[0], int(line.split()[1]) / 1024)
        time.sleep(0.05)
threading.Thread(target=_watch, daemon=True).start()
"""

CHILD_GENERATE = (
    WATCH
    + r"""
import hashlib, json, resource, sys, time
from pathlib import Path
from gravity.llm.base import Backend, Completion
from gravity.llm.engine import Engine
from gravity.profiles.stream import ReaderStream
from gravity.store import Store
from gravity.synth import GenerateConfig, synthesize

WORDS = "river lantern harvest quiet journey letters courage winter market garden voices".split()

class Instant(Backend):
    name = "instant"
    def __init__(self):
        super().__init__(config=None)
    def load(self):
        self._loaded = True
    def fingerprint(self):
        return {"backend": "instant", "model": "none", "revision": "1"}
    def generate(self, requests, params, seeds=None):
        out = []
        for request, seed in zip(requests, seeds):
            if "situation" in request.messages[-1].content:
                text = "The reader is choosing a gift and wonders whether the story fits them."
            else:
                digest = hashlib.sha256(str(seed).encode()).digest()
                text = " ".join(WORDS[b % len(WORDS)] for b in digest[:30]).capitalize() + "."
            out.append(Completion(text=text, prompt_tokens=1, completion_tokens=30))
        return out

profiles, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = GenerateConfig(max_items=1, facets=["values"], chunk_readers=1000,
                     filters={"near_duplicate_threshold": None, "min_words": 5})
start = time.monotonic()
out.mkdir(parents=True, exist_ok=True)
with ReaderStream([profiles]) as readers, Store(out / "store.sqlite") as store:
    engine = Engine(Instant(), store, progress=False)
    result = synthesize(readers, cfg, out, engine=engine, keep_records=False)
    completions = store.count_completions()
s = result.summary
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "anon_mb": ANON[0], "wall_s": time.monotonic() - start, "rows_in": s["rows_in"],
                  "written": s["written"], "rejected": s["rejected"],
                  "completions": completions,
                  "generated": s["tokens_generated"].get("completion", 0) // 30}))
"""
)

CHILD_EXPORT = (
    WATCH
    + r"""
import json, resource, sys, time
from gravity.export import export_run
start = time.monotonic()
stats = export_run(sys.argv[1], sys.argv[2], "jsonl", test_size=0.2, seed=0)
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "anon_mb": ANON[0], "wall_s": time.monotonic() - start,
                  "pairs": sum(s["pairs"] for s in stats.values())}))
"""
)


def write_readers(path: Path, n: int) -> None:
    """``n`` sampled readers as JSONL, 5,000 at a time, ids in a scrambled order."""
    from gravity.profiles import sample_profiles
    from gravity.profiles.io import profile_to_dict

    batch = 5000
    with path.open("w", encoding="utf-8") as f:
        for start in range(0, n, batch):
            size = min(batch, n - start)
            for k, profile in enumerate(sample_profiles("BR", size, seed=start)):
                scrambled = ((start + k) * 7919) % n  # a permutation when n is not 7919's multiple
                data = profile_to_dict(profile.model_copy(update={"id": f"r{scrambled:07d}"}))
                f.write(json.dumps(data) + "\n")


def child(code: str, *args: str, limit_s: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=limit_s,
    )
    if done.returncode != 0:
        raise SystemExit(f"child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _stored(store: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30) as conn:
            return conn.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def resume(n: int, limit_s: float) -> None:
    """kill -9 of the generate process at half of its completions, a rerun, and an
    uninterrupted run: completions generated again, and whether the outputs are identical."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="gravity-resume-") as tmp:
        root = Path(tmp)
        write_readers(root / "readers.jsonl", n)
        run, total = root / "run", 3 * n  # a scenario and two descriptions per reader
        cmd = [sys.executable, "-c", CHILD_GENERATE, str(root / "readers.jsonl"), str(run)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + limit_s
        while _stored(run / "store.sqlite") < total // 2 and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit("the run ended before it was killed")
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        kept = _stored(run / "store.sqlite")
        again = child(CHILD_GENERATE, str(root / "readers.jsonl"), str(run), limit_s=limit_s)
        whole = child(CHILD_GENERATE, str(root / "readers.jsonl"), str(root / "w"), limit_s=limit_s)
        same = all(
            (run / name).read_bytes() == (root / "w" / name).read_bytes()
            for name in ("pairs.jsonl", "rejects.jsonl")
        )
        print(
            f"resume at {n:,} readers: killed with {kept:,} of {total:,} completions stored; "
            f"the rerun generated {again['generated']:,} (missing: {total - kept:,}; generated "
            f"again: {again['generated'] - (total - kept):,}); output identical to an "
            f"uninterrupted run's ({whole['written']:,} pairs): {same}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readers", type=int, action="append", help="repeatable")
    parser.add_argument("--limit-s", type=float, default=7200, help="wall limit per process")
    parser.add_argument(
        "--resume", type=int, metavar="N", help="only the kill -9 and resume check at N readers"
    )
    args = parser.parse_args()
    if args.resume:
        resume(args.resume, args.limit_s)
        return
    sizes = sorted(args.readers or [10_000, 100_000])
    rows = []
    with tempfile.TemporaryDirectory(prefix="gravity-memory-") as tmp:
        for n in sizes:
            root = Path(tmp) / str(n)
            root.mkdir()
            t0 = time.monotonic()
            write_readers(root / "readers.jsonl", n)
            made = time.monotonic() - t0
            gen = child(
                CHILD_GENERATE, str(root / "readers.jsonl"), str(root / "run"), limit_s=args.limit_s
            )
            store_bytes = (root / "run" / "store.sqlite").stat().st_size
            exp = child(CHILD_EXPORT, str(root / "run"), str(root / "export"), limit_s=args.limit_s)
            rows.append((n, gen, exp, store_bytes, made))
            per_completion = store_bytes / max(gen["completions"], 1)
            print(
                f"{n:>9,} readers: generate peak RSS {gen['rss_mb']:.0f} MB (anonymous "
                f"{gen['anon_mb']:.0f} MB) in {gen['wall_s']:.0f} s, rows in "
                f"{gen['rows_in']:,} = {gen['written']:,} written + {gen['rejected']:,} "
                f"rejected, store {per_completion:.0f} bytes per completion "
                f"({gen['completions']:,}); export peak RSS {exp['rss_mb']:.0f} MB (anonymous "
                f"{exp['anon_mb']:.0f} MB) in {exp['wall_s']:.0f} s, {exp['pairs']:,} pairs; "
                f"readers file written in {made:.0f} s",
                flush=True,
            )
            (root / "readers.jsonl").unlink()
    base = rows[0]
    for n, gen, exp, _, _ in rows[1:]:
        print(
            f"ratio {n:,} / {base[0]:,} readers, peak RSS (anonymous): generate "
            f"{gen['rss_mb'] / base[1]['rss_mb']:.2f}x ({gen['anon_mb'] / base[1]['anon_mb']:.2f}x), "
            f"export {exp['rss_mb'] / base[2]['rss_mb']:.2f}x "
            f"({exp['anon_mb'] / base[2]['anon_mb']:.2f}x); goal: at most 1.5x at 1M"
        )


if __name__ == "__main__":
    main()
