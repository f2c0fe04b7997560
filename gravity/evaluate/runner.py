"""``gravity evaluate``: every system describes held-out books for held-out readers; the persona
judge ranks them; an offline embedding score measures how specific each text is to its reader.

Writes to the output folder: ``cases.jsonl`` (reader, book, every system's description),
``judgments.jsonl``, ``rejects.jsonl``, ``metrics.json``, ``report.md`` and PNG plots.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gravity.books import Book, load_catalog
from gravity.errors import GravityError
from gravity.evaluate.config import EvalConfig, SystemSpec
from gravity.evaluate.judge import (
    Verdict,
    build_request,
    judge_schema,
    labels_for,
    parse_verdict,
)
from gravity.evaluate.judge import permutation as judge_permutation
from gravity.evaluate.metrics import Judgment
from gravity.io import reading
from gravity.llm import ChatRequest, Message, SamplingParams, make_backend
from gravity.llm.engine import Engine, Reject
from gravity.profiles.io import atomic_write_text
from gravity.profiles.models import UserProfile
from gravity.profiles.render import render_profile
from gravity.store import Store
from gravity.synth.pipeline import choose_books, deployed_messages, slot_seed
from gravity.synth.tasks import finished_text


@dataclass(frozen=True)
class Case:
    """One reader x one held-out book."""

    reader: UserProfile
    book: Book

    @property
    def id(self) -> str:
        return f"{self.reader.id}:{self.book.id}"


def training_ids(paths: list[Path]) -> tuple[set[str], set[str]]:
    """Reader ids and book ids found in training runs (pairs.jsonl) or exports."""
    users: set[str] = set()
    books: set[str] = set()
    for path in paths:
        with reading(path):  # any failure reading a training folder is one line naming it
            rows = _training_rows(path)
            users |= {r["user_id"] for r in rows if r.get("user_id")}
            books |= {r["book_id"] for r in rows if r.get("book_id")}
    return users, books


def _training_rows(path: Path) -> list[dict]:
    from gravity.export import load_preference_data

    if (path / "pairs.jsonl").is_file():
        return [json.loads(x) for x in (path / "pairs.jsonl").read_text().splitlines() if x]
    if (path / "dataset_dict.json").is_file():  # every split of an export was seen
        from datasets import load_from_disk

        splits = list(load_from_disk(str(path)).values())
    elif path.is_dir():
        names = [n for n in ("train", "test") if any(path.glob(f"{n}.*"))]
        splits = [load_preference_data(path, n) for n in names or ["train"]]
    else:
        splits = [load_preference_data(path)]
    rows = []
    for split in splits:
        cols = [c for c in ("user_id", "book_id") if c in split.column_names]
        rows += split.select_columns(cols).to_list() if cols else []
    return rows


def check_held_out(cases: list[Case], train_paths: list[Path]) -> None:
    """Refuse readers or books that training saw."""
    if not train_paths:
        return
    users, books = training_ids(train_paths)
    leaked_users = sorted({c.reader.id for c in cases} & users)
    leaked_books = sorted({c.book.id for c in cases} & books)
    if leaked_users or leaked_books:
        parts = []
        if leaked_users:
            parts.append(f"readers {leaked_users[:5]}")
        if leaked_books:
            parts.append(f"books {leaked_books[:5]}")
        raise GravityError(
            "held-out evaluation would reuse training data: "
            + " and ".join(parts)
            + " appear in "
            + ", ".join(str(p) for p in train_paths)
        )


def build_cases(readers: list[UserProfile], catalog: list[Book], cfg: EvalConfig) -> list[Case]:
    """Each reader with ``books_per_reader`` seeded books."""
    return [
        Case(reader, book)
        for reader in sorted(readers, key=lambda r: r.id)
        for book in choose_books(reader, catalog, cfg.books_per_reader, cfg.seed)
    ]


def system_model(spec: SystemSpec, cfg: EvalConfig) -> str:
    return spec.model if spec.kind == "model" and spec.model else cfg.base_model


def describe(
    cases: list[Case], spec: SystemSpec, cfg: EvalConfig, store: Store, progress: bool
) -> list[str]:
    """One description per case from system ``spec`` (empty string if it produced nothing)."""
    backend_cfg = cfg.generation.model_copy(update={"model": system_model(spec, cfg)})
    requests = []
    for case in cases:
        profile = None if spec.kind == "base" else case.reader
        messages = [Message(**m) for m in deployed_messages(profile, case.book)]
        requests.append(ChatRequest(messages=messages, id=case.id))
    params = [
        SamplingParams(
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            seed=slot_seed(cfg.seed, case.id, "describe"),
        )
        for case in cases
    ]
    with make_backend(backend_cfg) as backend:
        outs = Engine(backend, store, progress=progress).generate(
            requests, params, desc=f"describe[{spec.name}]"
        )
    texts = []
    for out in outs:
        text = finished_text(out, "trim")
        texts.append("" if isinstance(text, Reject) else text)
    return texts


def judge_cases(
    cases: list[Case], descriptions: dict[str, list[str]], cfg: EvalConfig, engine: Engine
) -> tuple[list[Judgment], list[dict[str, Any]]]:
    """Persona-judge every case ``R`` times; judgments in system space, plus rejects."""
    systems = list(descriptions)
    rounds = cfg.permutations or len(systems)
    labels = labels_for(len(systems))
    rows: list[tuple[Case, int, list[str]]] = []
    requests, params = [], []
    schema = judge_schema(labels)
    for index, case in enumerate(cases):
        for r in range(rounds):
            order = judge_permutation(systems, case.id, r, cfg.seed)
            texts = [descriptions[s][index] or "(no description)" for s in order]
            requests.append(build_request(render_profile(case.reader), case.book, texts))
            params.append(
                SamplingParams(
                    max_new_tokens=cfg.judge_max_new_tokens,
                    temperature=0.0,
                    json_schema=schema,
                    seed=slot_seed(cfg.seed, f"{case.id}:{r}", "judge"),
                )
            )
            rows.append((case, r, order))
    results = engine.generate_parsed(
        requests,
        params,
        lambda out, _i: parse_verdict(out, labels),
        max_attempts=1,
        desc="judge",
    )
    judgments, rejects = [], []
    for (case, r, order), result in zip(rows, results):
        if isinstance(result, Reject):
            rejects.append(
                {
                    "case_id": case.id,
                    "permutation": r,
                    "reason": result.kind,
                    "detail": result.reason,
                }
            )
            continue
        verdict: Verdict = result.value
        by_label = dict(zip(labels, order))
        judgments.append(
            Judgment(
                case_id=case.id,
                reader_id=case.reader.id,
                country=case.reader.country,
                ranking=tuple(by_label[label] for label in verdict.ranking),
                interest={by_label[label]: float(v) for label, v in verdict.interest.items()},
            )
        )
    return judgments, rejects


def alignment_scores(
    cases: list[Case], descriptions: dict[str, list[str]]
) -> dict[str, list[float | None]]:
    """system -> per case: cos(text, own profile) - mean cos(text, other readers' profiles).

    None where the text is empty or there is no other reader to compare with.
    """
    from gravity.embed import embed

    readers = sorted({c.reader.id: c.reader for c in cases}.values(), key=lambda r: r.id)
    index = {r.id: i for i, r in enumerate(readers)}
    profile_vecs = embed([render_profile(r) for r in readers])
    scores: dict[str, list[float | None]] = {}
    for system, texts in descriptions.items():
        vecs = embed([t or " " for t in texts])
        sims = vecs @ profile_vecs.T
        row: list[float | None] = []
        for k, case in enumerate(cases):
            own = index[case.reader.id]
            others = [float(sims[k, j]) for j in range(len(readers)) if j != own]
            if not texts[k] or not others:
                row.append(None)
            else:
                row.append(float(sims[k, own]) - statistics.fmean(others))
        scores[system] = row
    return scores


def judge_alignment_agreement(
    judgments: list[Judgment], cases: list[Case], alignment: dict[str, list[float | None]]
) -> dict[str, float]:
    """How often the judge and the alignment score order a pair of systems the same way."""
    from gravity.evaluate.metrics import mean_ranks

    position = {c.id: k for k, c in enumerate(cases)}
    agree = total = 0
    for case_id, ranks in mean_ranks(judgments).items():
        k = position[case_id]
        systems = sorted(ranks)
        for i, a in enumerate(systems):
            for b in systems[i + 1 :]:
                sa, sb = alignment[a][k], alignment[b][k]
                if sa is None or sb is None or sa == sb or ranks[a] == ranks[b]:
                    continue
                total += 1
                agree += (ranks[a] < ranks[b]) == (sa > sb)
    return {"pairs": total, "agreement": agree / total if total else float("nan")}


def evaluate(
    readers: list[UserProfile], cfg: EvalConfig, out: Path, progress: bool = True
) -> dict[str, Any]:
    """Run the whole evaluation into ``out``; returns the metrics written to metrics.json."""
    from gravity.evaluate.report import compute_metrics, write_report

    if len({r.id for r in readers}) < 2:
        raise GravityError("evaluation needs at least two held-out readers")
    catalog = load_catalog(cfg.books)
    cases = build_cases(readers, catalog, cfg)
    check_held_out(cases, cfg.train_data)
    out.mkdir(parents=True, exist_ok=True)
    with Store(out / "store.sqlite") as store:
        descriptions = {
            spec.name: describe(cases, spec, cfg, store, progress) for spec in cfg.systems
        }
        with make_backend(cfg.judge) as judge:
            engine = Engine(judge, store, progress=progress)
            judgments, rejects = judge_cases(cases, descriptions, cfg, engine)
    alignment = alignment_scores(cases, descriptions)
    case_rows = [
        {
            "case_id": c.id,
            "reader_id": c.reader.id,
            "country": c.reader.country,
            "book_id": c.book.id,
            "book_title": c.book.title,
            "descriptions": {s: descriptions[s][k] for s in descriptions},
            "alignment": {s: alignment[s][k] for s in alignment},
        }
        for k, c in enumerate(cases)
    ]
    atomic_write_text(
        out / "cases.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in case_rows)
    )
    atomic_write_text(
        out / "judgments.jsonl",
        "".join(
            json.dumps(
                {
                    "case_id": j.case_id,
                    "reader_id": j.reader_id,
                    "country": j.country,
                    "ranking": list(j.ranking),
                    "interest": j.interest,
                }
            )
            + "\n"
            for j in judgments
        ),
    )
    atomic_write_text(out / "rejects.jsonl", "".join(json.dumps(r) + "\n" for r in rejects))
    systems = [s.name for s in cfg.systems]
    metrics = compute_metrics(judgments, cases, systems, alignment, cfg.bootstrap, cfg.seed)
    metrics["judge"] = {
        "calls": len(cases) * (cfg.permutations or len(systems)),
        "parsed": len(judgments),
        "rejected": len(rejects),
        "agreement_with_alignment": judge_alignment_agreement(judgments, cases, alignment),
        "model": cfg.judge.model,
    }
    metrics["cases"] = len(cases)
    metrics["readers"] = len({c.reader.id for c in cases})
    write_report(out, metrics, cfg, systems)
    return metrics
