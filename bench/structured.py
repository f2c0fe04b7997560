"""Structured output on the embedded model: valid-answer rate and time per valid answer of each
step that asks for JSON, on one backend, measured in this one run.

    python bench/structured.py                      # transformers, 8 answers per step
    python bench/structured.py --backend llamacpp --n 16
    PYTHONPATH=<an older checkout> python bench/structured.py   # the same steps on older code

Steps: item tags (``tag_items`` on the starter catalog), traits from reviews
(``traits_from_reviews`` on reviews written for this bench), reader intents of an item
(``ItemIntents`` from ``prompts/item_intents.j2``) and the judge's JSON verdict (``LabelJudge``
with ``method="constrained"``, pairwise prompt). One attempt per answer, no fast stop, a fresh
store: every answer is generated here. "valid" = parsed into the step's schema (for traits, the
evidence check after it is counted apart). Prints one JSON line per step and a table.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gravity.books import Book
from gravity.events.tasks import tag_items, traits_from_reviews
from gravity.intents.extract import ItemIntents
from gravity.judging import LabelJudge
from gravity.llm import BackendConfig, ChatRequest, SamplingParams, make_backend
from gravity.llm.engine import Engine, Parsed
from gravity.profiles import load_profiles
from gravity.profiles.render import render_profile
from gravity.prompts import render
from gravity.resources import profiles_dir, tasks_dir

REVIEWS = [
    [
        "A slow, careful novel about a family farm; I loved how it honours tradition and duty.",
        "Too much adventure and not enough heart for me.",
    ],
    [
        "Gripping from the first page: a heist, a chase, and a hero who breaks every rule.",
        "I read it in one night, pure fun and excitement.",
    ],
    [
        "The author explains climate science with patience; it made me want to help my town.",
        "A thoughtful book on fairness and caring for strangers.",
    ],
    [
        "Dry and technical, but it taught me how to run a small business and win clients.",
        "Ambitious people will find good advice on leadership here.",
    ],
    [
        "A gentle poetry collection about grief; I cried and felt less alone.",
        "Quiet, kind and sad.",
    ],
    [
        "Funny, clever satire of office life; the jokes land every time.",
        "Light reading for a long flight.",
    ],
    [
        "A history of the old city walls, full of maps and dates; I learned a lot.",
        "Serious and well researched, if a little long.",
    ],
    [
        "Strange, bold science fiction that questions everything about authority.",
        "I love books that make me imagine new worlds and freedoms.",
    ],
]


def _kw(func, **extra):
    """``extra`` keywords that ``func`` accepts (older code has no fast stop)."""
    params = inspect.signature(func).parameters
    return {k: v for k, v in extra.items() if k in params}


def _items(n: int) -> list[dict]:
    catalog = tasks_dir() / "book-description" / "catalog.jsonl"
    rows = [json.loads(line) for line in catalog.read_text().splitlines()]
    return [{"publisher": None, **row} for row in rows[:n]]


def _tags(engine: Engine, n: int, params: SamplingParams) -> tuple[int, int, str]:
    out = tag_items(engine, _items(n), params, 1, **_kw(tag_items, fast_stop=None))
    bad = [o for o in out if isinstance(o, str)]
    return n - len(bad), n, bad[0] if bad else ""


def _traits(engine: Engine, n: int, params: SamplingParams) -> tuple[int, int, str]:
    reviews = [REVIEWS[i % len(REVIEWS)] for i in range(n)]
    out = traits_from_reviews(
        engine, reviews, params, 1, **_kw(traits_from_reviews, fast_stop=None)
    )
    unverified = "no evidence quote occurs in the reviews"
    bad = [o for o in out if isinstance(o, str) and o != unverified]
    return n - len(bad), n, bad[0] if bad else ""


def _intents(engine: Engine, n: int, params: SamplingParams) -> tuple[int, int, str]:
    requests = [
        ChatRequest.from_prompt(
            render("item_intents.j2", item=item, reviews=[], neighbours=[], max_intents=4)
        )
        for item in _items(n)
    ]
    extra = _kw(engine.generate_structured, fast_stop=None)
    out = engine.generate_structured(requests, params, ItemIntents, 1, "intents", **extra)
    bad = [o.reason for o in out if not isinstance(o, Parsed)]
    return n - len(bad), n, bad[0] if bad else ""


def _judge(engine: Engine, n: int, params: SamplingParams) -> tuple[int, int, str]:
    profile = load_profiles(profiles_dir() / "examples" / "usa.yaml")[0]
    requests = []
    for item in _items(n):
        book = Book(**item)
        requests.append(
            ChatRequest.from_prompt(
                render(
                    "judge_pair.j2",
                    profile_text=render_profile(profile),
                    book=book,
                    first=f"A sweeping story: {item['title']}, for readers who love adventure.",
                    second=f"{item['title']}: a quiet, thoughtful classic about family and duty.",
                    answer="json",
                )
            )
        )
    judge = LabelJudge(engine, method="constrained")
    out = judge.choose(requests, ["A", "B"], seeds=list(range(n)))
    bad = [o.reason for o in out if not hasattr(o, "probs")]
    return n - len(bad), n, bad[0] if bad else ""


STEPS = {"item tags": _tags, "traits": _traits, "intents": _intents, "judge verdict": _judge}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="transformers")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--label", default="", help="a name for this code (e.g. before, after)")
    args = parser.parse_args()
    params = SamplingParams(max_new_tokens=320, temperature=0.3, seed=0)
    rows = []
    with make_backend(BackendConfig(backend=args.backend)) as backend:
        backend.load()
        engine = Engine(backend, None, progress=False)
        for name, step in STEPS.items():
            start = time.monotonic()
            valid, total, sample = step(engine, args.n, params)
            wall = time.monotonic() - start
            row = {
                "code": args.label,
                "backend": args.backend,
                "step": name,
                "valid": valid,
                "total": total,
                "seconds": round(wall, 1),
                "s_per_valid": round(wall / valid, 1) if valid else None,
                "sample_reject": sample[:160],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'step':<15}{'valid':>10}{'s/valid':>10}")
    for r in rows:
        print(f"{r['step']:<15}{r['valid']:>5}/{r['total']:<4}{r['s_per_valid'] or '-':>10}")


if __name__ == "__main__":
    main()
