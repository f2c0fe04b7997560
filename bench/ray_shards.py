"""Shards on a local Ray cluster: the README's Ray driver, run for real.

    pip install 'ray>=2.9,<3'     # in the environment that runs this driver (any Python)
    python bench/ray_shards.py --gravity-python .venv/bin/python --readers 200 --shards 4

Starts mock OpenAI-compatible servers on 127.0.0.1 (``bench/fleet.py --serve --echo``), writes
``--readers`` synthetic readers, starts a local Ray cluster (``ray.init(num_cpus=...)``), submits
one Ray task per shard, each running ``gravity generate --shard I/N`` with the gravity install
named by ``--gravity-python``, then ``gravity merge``, and, for comparison, the same config in one
process. Prints the times, the requests the servers answered, and whether the merged folder's
``pairs.jsonl``, ``rejects.jsonl`` and ``summary.json`` counts equal the one-process run's.
Ray need not be installed beside gravity: only this driver imports it. Loopback only; the
servers and the cluster are stopped at the end.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from fleet import _free_port, _wait  # noqa: E402  (the mock servers' own helpers)


def _answered(ports: list[int]) -> int:
    import urllib.request

    total = 0
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as r:
            total += json.loads(r.read())["answered"]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gravity-python", default=sys.executable, help="a Python with gravity")
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2, help="the local cluster's CPUs")
    parser.add_argument("--limit-s", type=float, default=1800.0)
    args = parser.parse_args()
    import ray  # only the driver needs it

    gravity = [args.gravity_python, "-m", "gravity"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    ports = [_free_port() for _ in range(args.servers)]
    servers = [
        subprocess.Popen(
            [args.gravity_python, str(HERE / "fleet.py"), "--serve", str(p), "--echo"], env=env
        )
        for p in ports
    ]
    tmp = Path(tempfile.mkdtemp(prefix="gravity-ray-"))
    try:
        for p in ports:
            _wait(p)
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
            "from memory import write_readers; write_readers(Path(sys.argv[2]), int(sys.argv[3]))"
        )
        readers = tmp / "readers.jsonl"
        subprocess.run(
            [args.gravity_python, "-c", code, str(HERE), str(readers), str(args.readers)],
            env=env,
            check=True,
        )
        config = tmp / "gen.yaml"
        urls = "".join(f"\n    - http://127.0.0.1:{p}/v1" for p in ports)
        config.write_text(
            "filters: {min_words: 5}\nchunk_readers: 50\n"
            f"backend:\n  backend: openai\n  model: mock\n  concurrency: 16\n  base_urls:{urls}\n"
        )
        base = [*gravity, "generate", "--profiles", str(readers), "--config", str(config)]

        @ray.remote(num_cpus=1)
        def shard(i: int, n: int) -> int:
            out = tmp / f"shard-{i}"
            cmd = [*base, "--shard", f"{i}/{n}", "--out", str(out)]
            return subprocess.call(cmd, env=env, stdout=subprocess.DEVNULL)

        start = time.monotonic()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        up = time.monotonic() - start
        start = time.monotonic()
        codes = ray.get([shard.remote(i, args.shards) for i in range(args.shards)])
        shards_s = time.monotonic() - start
        ray.shutdown()
        if codes != [0] * args.shards:
            raise SystemExit(f"shard exit codes {codes}")
        answered_sharded = _answered(ports)
        start = time.monotonic()
        subprocess.run(
            [
                *gravity,
                "merge",
                str(tmp / "merged"),
                *(str(tmp / f"shard-{i}") for i in range(args.shards)),
            ],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        merge_s = time.monotonic() - start
        start = time.monotonic()
        subprocess.run(
            [*base, "--out", str(tmp / "one")], env=env, check=True, stdout=subprocess.DEVNULL
        )
        one_s = time.monotonic() - start
        same = {
            name: (tmp / "merged" / name).read_bytes() == (tmp / "one" / name).read_bytes()
            for name in ("pairs.jsonl", "rejects.jsonl")
        }
        counts = [
            {
                k: json.loads((tmp / run / "summary.json").read_text())[k]
                for k in ("rows_in", "written", "rejected")
            }
            for run in ("merged", "one")
        ]
        print(
            json.dumps(
                {
                    "ray": ray.__version__,
                    "readers": args.readers,
                    "shards": args.shards,
                    "cluster_cpus": args.cpus,
                    "cluster_start_s": round(up, 1),
                    "shards_s": round(shards_s, 1),
                    "merge_s": round(merge_s, 1),
                    "one_process_s": round(one_s, 1),
                    "requests_answered_by_shards": answered_sharded,
                    "merged_equals_one_process": same,
                    "counts_merged_vs_one": counts,
                }
            )
        )
        if not all(same.values()) or counts[0] != counts[1]:
            raise SystemExit("the merged shards differ from the one-process run")
    finally:
        for s in servers:
            s.terminate()
        for s in servers:
            s.wait(timeout=10)


if __name__ == "__main__":
    main()
