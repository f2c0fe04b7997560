"""Store benchmark: the completion store (SQLite, WAL) as it grows to millions of rows.

    python bench/store.py                    # 1M rows
    python bench/store.py --rows 10000000    # 10M rows (about 9 GB of disk)

Writes ``--rows`` completions through ``Store.put_completions`` in chunks of ``--chunk`` (the
engine stores a streaming run's completions in chunks of its batch size, or each second), each
row shaped like a synthesis completion (a request of about 700 bytes, a 100-byte answer, a
sha256 key). After every ``--every`` rows it prints: rows so far, the write rate of the last
interval (rows/s), the time to look up 1,000 stored and 1,000 absent keys (what a resumed run
does before it sends anything), the file's bytes per row, and the process's peak RSS. The
store is created in a temporary folder (``--dir`` to choose the disk) and removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gravity.store import Store, canonical_json  # noqa: E402

FINGERPRINT = canonical_json({"backend": "openai", "model": "mock", "revision": "unspecified"})
WORDS = [
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


def _row(i: int) -> tuple[str, str, str, dict]:
    request = canonical_json(
        [
            {"role": "system", "content": "You write short descriptions for readers. " * 3},
            {
                "role": "user",
                "content": f"Reader {i}: " + " ".join(WORDS[(i + k) % 10] for k in range(50)),
            },
        ]
    )
    key = hashlib.sha256(f"{request}|{i}".encode()).hexdigest()
    text = " ".join(WORDS[(i * 7 + k) % 10] for k in range(16)).capitalize() + "."
    completion = {
        "text": text,
        "prompt_tokens": 180,
        "completion_tokens": 24,
        "finish_reason": "stop",
    }
    return key, FINGERPRINT, request, completion


def _lookup_ms(store: Store, written: int, rng: random.Random) -> tuple[float, float]:
    present = [_row(rng.randrange(written))[0] for _ in range(1000)]
    absent = [hashlib.sha256(f"absent|{rng.random()}".encode()).hexdigest() for _ in range(1000)]
    out = []
    for keys, expect in ((present, 1000), (absent, 0)):
        start = time.perf_counter()
        found = store.get_completions(keys)
        out.append((time.perf_counter() - start) * 1000)
        if len(found) != len(set(keys)) * (expect > 0):
            raise SystemExit(f"lookup found {len(found)} of {len(set(keys))} keys")
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--every", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="gravity-store-", dir=args.dir) as tmp:
        path = Path(tmp) / "store.sqlite"
        with Store(path) as store:
            written, mark, marked, start = 0, time.monotonic(), 0, time.monotonic()
            while written < args.rows:
                n = min(args.chunk, args.rows - written)
                store.put_completions([_row(i) for i in range(written, written + n)])
                written += n
                if written // args.every > (written - n) // args.every or written == args.rows:
                    rate = (written - marked) / (time.monotonic() - mark)
                    hit, miss = _lookup_ms(store, written, rng)
                    size = sum(p.stat().st_size for p in Path(tmp).glob("store.sqlite*"))
                    print(
                        json.dumps(
                            {
                                "rows": written,
                                "rows_per_s_last_interval": round(rate),
                                "lookup_1000_present_ms": round(hit, 1),
                                "lookup_1000_absent_ms": round(miss, 1),
                                "bytes_per_row": round(size / written),
                                "peak_rss_mb": round(
                                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                                ),
                                "elapsed_s": round(time.monotonic() - start),
                            }
                        ),
                        flush=True,
                    )
                    mark, marked = time.monotonic(), written


if __name__ == "__main__":
    main()
