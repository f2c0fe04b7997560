"""DPO training throughput and peak memory on the embedded model (CPU), LoRA vs full.

    python bench/train.py

Each configuration runs in its own process so that peak resident memory (ru_maxrss) is its own.
Data: 16 synthetic pairs with prompts of the deployed task's shape, batch 2, max_length 512.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from gravity.train import TrainConfig, train
cfg = TrainConfig(full={full}, per_device_train_batch_size=2, max_length=512, num_train_epochs=1)
s = train("dpo", {data!r}, {out!r}, cfg)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
print(json.dumps({{"pairs": s["train_pairs"], "runtime": s["train_runtime_s"], "peak_gb": peak}}))
"""


def make_pairs(path: Path) -> None:
    from gravity.books import load_catalog
    from gravity.profiles import sample_profiles
    from gravity.task import deployed_messages

    books = load_catalog()
    rows = []
    for i, profile in enumerate(sample_profiles("BR", 16, seed=3)):
        rows.append(
            {
                "prompt": deployed_messages(profile, books[i]),
                "chosen": [
                    {
                        "role": "assistant",
                        "content": f"For a reader who loves {profile.interests.genres[0]}, "
                        f"{books[i].title} offers {books[i].description.lower()}",
                    }
                ],
                "rejected": [
                    {
                        "role": "assistant",
                        "content": f"{books[i].title} is a book. {books[i].description}",
                    }
                ],
                "user_id": profile.id,
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pairs.jsonl"
        make_pairs(data)
        results = {}
        for name, full in (("lora", False), ("full", True)):
            code = CHILD.format(
                root=str(ROOT), full=full, data=str(data), out=str(Path(tmp) / name)
            )
            run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if run.returncode != 0:
                sys.exit(run.stderr[-3000:])
            results[name] = json.loads(run.stdout.strip().splitlines()[-1])
    for name, r in results.items():
        print(
            f"D1 dpo/{name} pairs/s: {r['pairs'] / r['runtime']:.3f}  "
            f"({r['pairs']} pairs in {r['runtime']:.1f} s, peak RSS {r['peak_gb']:.2f} GB)"
        )
    lora, full = results["lora"], results["full"]
    print(
        f"D2 lora/full pairs/s: {(lora['pairs'] / lora['runtime']) / (full['pairs'] / full['runtime']):.2f}"
    )
    print(f"D3 lora/full peak memory: {lora['peak_gb'] / full['peak_gb']:.2f}")


if __name__ == "__main__":
    main()
