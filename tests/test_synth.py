"""Synthesis: slots, both modes, filters and accounting (fake writer for speed), catalog and
CLI errors, kill -9 resume; plus the real embedded-model run (test_generate_on_embedded_model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gravity.books import load_catalog
from gravity.errors import GravityError
from gravity.llm.engine import Engine
from gravity.store import Store
from gravity.synth import GenerateConfig, synthesize
from gravity.synth.config import FilterConfig
from gravity.synth.contrast import contrast_profile
from gravity.synth.pipeline import build_slots
from gravity.task import deployed_messages
from tests.fakes import WriterBackend

ROOT = Path(__file__).resolve().parents[1]


def _cfg(**kw) -> GenerateConfig:
    kw.setdefault("filters", FilterConfig(min_words=5, near_duplicate_threshold=None))
    return GenerateConfig(max_items=2, **kw)


def _run(tmp_path, profiles, cfg, backend=None):
    engine = Engine(backend or WriterBackend(), Store(tmp_path / "store.sqlite"), progress=False)
    return synthesize(profiles, cfg, tmp_path / "run", engine=engine)


def test_starter_catalog():
    books = load_catalog()
    assert len(books) >= 60
    assert len({g for b in books for g in b.genres}) >= 10
    assert len({b.id for b in books}) == len(books)
    assert all(len(b.description.split()) >= 10 for b in books)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("b.csv", "id,title,author\nx,T,A\n", "missing column(s) description"),
        (
            "b.csv",
            "id,title,author,description,year\nx,T,A,Long enough text here,soon\n",
            "b.csv:2: year:",
        ),
        (
            "b.jsonl",
            '{"id": "x", "title": "T", "author": "A", "description": "Long enough text"}\n{"id": "x", "title": "T", "author": "A", "description": "Long enough text"}\n',
            "b.jsonl:2: id: duplicate book id 'x'",
        ),
        (
            "b.jsonl",
            '{"id": "bad id", "title": "T", "author": "A", "description": "Long enough text"}\n',
            "b.jsonl:1: id:",
        ),
        ("b.jsonl", "{nope\n", "b.jsonl:1: <json>"),
        ("b.txt", "x", "unknown catalog format"),
        ("b.csv", "", "no books in catalog"),
    ],
)
def test_catalog_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(GravityError) as info:
        load_catalog(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_catalog_csv_and_parquet(tmp_path):
    csv = tmp_path / "b.csv"
    csv.write_text(
        "id,title,author,year,genres,description\nx1,T,A,1900,fantasy; poetry,A tale of ten words or so here\n"
    )
    (book,) = load_catalog(csv)
    assert book.genres == ("fantasy", "poetry") and book.year == 1900
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([book.model_dump()]), tmp_path / "b.parquet")
    assert load_catalog(tmp_path / "b.parquet") == [book]


def test_slots_and_record_ids(example_profiles):
    catalog = load_catalog()
    cfg = _cfg(facets=["values", "culture"], scenarios_per_facet=2)
    slots = build_slots(example_profiles, catalog, cfg)
    assert len(slots) == 4 * 2 * 2 * 2
    ids = [s.record_id for s in slots]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    assert ids[0].startswith("gravity:br-example-01:")
    # Book choice depends on (seed, user) only.
    again = build_slots(list(reversed(example_profiles)), catalog, cfg)
    assert [s.record_id for s in again] == ids
    naive = build_slots(example_profiles, catalog, cfg.model_copy(update={"mode": "naive"}))
    assert len(naive) == len(slots) and {s.facet for s in naive} == {"none"}


def test_gravity_mode_records_and_accounting(tmp_path, example_profiles):
    result = _run(tmp_path, example_profiles, _cfg())
    s = result.summary
    assert s["rows_in"] == 4 * 2 * 4 == s["written"] + s["rejected"]
    assert s["written"] > 0
    rec = result.records[0]
    assert rec["prompt"] == deployed_messages(
        next(p for p in example_profiles if p.id == rec["user_id"]),
        next(b for b in load_catalog() if b.id == rec["item_id"]),
    )
    assert "About the reader:" in rec["prompt"][1]["content"]
    assert rec["chosen"][0]["role"] == rec["rejected"][0]["role"] == "assistant"
    assert rec["mode"] == "gravity" and rec["strategy"] == "generic" and rec["scenario"]
    assert set(json.loads(rec["template_hashes"])) >= {"scenario.j2", "chosen.j2", "generic.j2"}
    run = tmp_path / "run"
    lines = (run / "pairs.jsonl").read_text().splitlines()
    assert len(lines) == s["written"]
    assert json.loads((run / "summary.json").read_text())["rows_in"] == s["rows_in"]
    assert (run / "config.yaml").is_file() and (run / "rejects.jsonl").is_file()


def test_naive_mode_same_pipeline(tmp_path, example_profiles):
    result = _run(tmp_path, example_profiles, _cfg(mode="naive", facets=["values"]))
    s = result.summary
    assert s["mode"] == "naive" and s["rows_in"] == 8 == s["written"] + s["rejected"]
    rec = result.records[0]
    assert (
        rec["facet"] == "none" and rec["strategy"] == "quality_judgment" and rec["scenario"] is None
    )
    assert rec["record_id"].startswith("naive:")
    assert "About the reader:" in rec["prompt"][1]["content"]  # the deployed prompt is the same


def test_filters_reject_with_reasons(tmp_path, example_profiles):
    overrides = {
        # every generic description is the same text -> duplicates across the dataset
        "for a general audience": "Same words for every reader of every book in the catalog here.",
    }
    cfg = _cfg(
        facets=["values"],
        filters=FilterConfig(min_words=5, max_words=30, near_duplicate_threshold=None),
    )
    result = _run(tmp_path, example_profiles[:2], cfg, WriterBackend(overrides=overrides))
    assert result.summary["written"] == 4  # distinct chosen texts keep pairs distinct
    # identical chosen and rejected
    same = "Exactly this text, written the same way for both sides of the pair."
    overrides = {"Reader (values)": same, "for a general audience": same}
    result = _run(
        tmp_path / "b",
        example_profiles[:1],
        _cfg(facets=["values"]),
        WriterBackend(overrides=overrides),
    )
    assert result.summary["rejects_by_reason"] == {"identical": 2}
    # too short, wrong language, empty scenario
    result = _run(
        tmp_path / "c",
        example_profiles[:1],
        _cfg(facets=["values"]),
        WriterBackend(overrides={"Reader (values)": "Too short."}),
    )
    assert result.summary["rejects_by_reason"] == {"chosen_too_short": 2}
    assert result.rejects[0]["detail"].startswith("2 words < 5 (after 2 attempts)")
    pt = "Uma história bonita sobre família, justiça e comunidade no interior do Brasil antigo."
    cfg = _cfg(
        facets=["values"],
        filters=FilterConfig(min_words=5, language="en", near_duplicate_threshold=None),
    )
    result = _run(
        tmp_path / "d", example_profiles[:1], cfg, WriterBackend(overrides={"Reader (values)": pt})
    )
    assert result.summary["rejects_by_reason"] == {"chosen_wrong_language": 2}
    result = _run(
        tmp_path / "e",
        example_profiles[:1],
        _cfg(facets=["values"]),
        WriterBackend(overrides={"describe a concrete situation": "  "}),
    )
    assert result.summary["rejects_by_reason"] == {"scenario_empty": 2}
    for r in (result,):
        assert r.summary["rows_in"] == r.summary["written"] + r.summary["rejected"]


def test_duplicate_pairs_across_dataset(tmp_path, example_profiles):
    overrides = {
        "Reader (values)": "One chosen text for all readers and books alike.",
        "for a general audience": "One rejected text for all readers and books alike.",
    }
    result = _run(
        tmp_path, example_profiles[:2], _cfg(facets=["values"]), WriterBackend(overrides=overrides)
    )
    assert result.summary["written"] == 1
    assert result.summary["rejects_by_reason"] == {"duplicate_pair": 3}
    first = result.records[0]["record_id"]
    assert all(first in r["detail"] for r in result.rejects)


def test_near_duplicate_filter_uses_embeddings(tmp_path, example_profiles):
    overrides = {
        "Reader (values)": "A moving story of a family that stays together through a long hard winter.",
        "for a general audience": "A moving story of a family that stays together through a long, hard winter!",
    }
    cfg = _cfg(facets=["values"], filters=FilterConfig(min_words=5, near_duplicate_threshold=0.95))
    result = _run(tmp_path, example_profiles[:1], cfg, WriterBackend(overrides=overrides))
    assert result.summary["rejects_by_reason"] == {"near_duplicate": 2}
    assert "cosine" in result.rejects[0]["detail"]


def test_truncation_trim_or_reject():
    from gravity.llm.base import Completion
    from gravity.synth.tasks import DescriptionRow, DescriptionTask

    book = load_catalog()[0]
    cut = Completion(
        text="First full sentence here is long enough. Second one is cut off mid",
        finish_reason="length",
    )
    trim = DescriptionTask(FilterConfig(min_words=3)).parse(cut, DescriptionRow(book))
    assert trim == "First full sentence here is long enough."
    reject = DescriptionTask(FilterConfig(min_words=3, on_truncation="reject")).parse(
        cut, DescriptionRow(book)
    )
    assert reject.kind == "truncated"
    nothing = Completion(text="no sentence end at all", finish_reason="length")
    assert (
        DescriptionTask(FilterConfig(min_words=3)).parse(nothing, DescriptionRow(book)).kind
        == "truncated"
    )


def test_contrast_profiles(example_profiles):
    p = example_profiles[0]
    v = contrast_profile(p, "values", [])
    assert v.schwartz.ranked()[0] == p.schwartz.ranked()[-1]
    b = contrast_profile(p, "personality", [])
    assert b.big_five.openness == pytest.approx(6 - p.big_five.openness)
    c = contrast_profile(p, "culture", [])
    assert (
        c.hofstede.pdi == 100 - p.hofstede.pdi
        and c.wvs.traditional_secular == -p.wvs.traditional_secular
    )
    i = contrast_profile(p, "interests", ["poetry", "horror", "history"])
    assert i.interests.dislikes == p.interests.genres and set(i.interests.genres).isdisjoint(
        p.interests.genres
    )


def test_contrasting_strategy(tmp_path, example_profiles):
    backend = WriterBackend()
    result = _run(
        tmp_path,
        example_profiles[:1],
        _cfg(facets=["values"], rejected_strategy="contrasting"),
        backend,
    )
    assert result.records[0]["strategy"] == "contrasting"
    prompts = [
        r.messages[-1].content for r in backend.seen if "Reader (values)" in r.messages[-1].content
    ]
    assert len(prompts) == 4  # 2 chosen + 2 contrasting, no generic prompt
    assert not any("for a general audience" in r.messages[-1].content for r in backend.seen)


# --- CLI: malformed inputs write nothing ------------------------------------------------------


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "gravity", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


@pytest.mark.parametrize(
    "setup, expected",
    [
        (lambda d: (d / "p.yaml").write_text("id: x\n"), "p.yaml:1: demographics: Field required"),
        (lambda d: (d / "cfg.yaml").write_text("mode: clever\n"), "cfg.yaml: mode:"),
        (
            lambda d: (d / "cfg.yaml").write_text("facets: [zodiac]\n"),
            "cfg.yaml: facets.0: Input should be 'interests', 'values', 'personality', "
            "'culture' or 'intents'",
        ),
        (
            lambda d: (d / "cfg.yaml").write_text("filters: {min_words: 50, max_words: 10}\n"),
            "cfg.yaml: filters: min_words must not exceed max_words",
        ),
        (
            lambda d: (d / "cfg.yaml").write_text("backend: {backend: tgi}\n"),
            "cfg.yaml: backend.backend: Input should be 'transformers', 'llamacpp', 'openai' "
            "or 'vllm'",
        ),
        (
            lambda d: (d / "books.csv").write_text("id,title\nx,T\n"),
            "books.csv: missing column(s) author, description",
        ),
    ],
)
def test_generate_cli_bad_inputs(tmp_path, example_files, setup, expected):
    setup(tmp_path)
    args = ["generate", "--out", str(tmp_path / "run")]
    args += [
        "--profiles",
        str(tmp_path / "p.yaml") if (tmp_path / "p.yaml").exists() else str(example_files[0]),
    ]
    if (tmp_path / "cfg.yaml").exists():
        args += ["--config", str(tmp_path / "cfg.yaml")]
    if (tmp_path / "books.csv").exists():
        args += ["--catalog", str(tmp_path / "books.csv")]
    result = _cli(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_generate_cli_flag_validation(tmp_path, example_files):
    result = _cli(
        "generate",
        "--profiles",
        str(example_files[0]),
        "--out",
        str(tmp_path / "r"),
        "--facets",
        "zodiac",
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("error: Invalid value for '--facets': 'zodiac' is not one of")


# --- kill -9 at several points, then resume ---------------------------------------------------

JOB = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from gravity.llm.engine import Engine
    from gravity.profiles import load_many
    from gravity.store import Store
    from gravity.synth import GenerateConfig, synthesize
    from gravity.synth.config import FilterConfig
    from tests.fakes import WriterBackend
    out = Path({out!r})
    out.mkdir(parents=True, exist_ok=True)
    profiles = load_many([Path(p) for p in {profiles!r}])
    cfg = GenerateConfig(max_items=2, facets=["values", "culture"],
                         filters=FilterConfig(min_words=5, near_duplicate_threshold=None))
    engine = Engine(WriterBackend(delay_s=0.1), Store(out / "store.sqlite"), batch_size=2, progress=False)
    synthesize(profiles, cfg, out, engine=engine)
    print("calls", engine.calls, flush=True)
    """
)


def _ids(run: Path) -> list[str]:
    return [
        json.loads(line)["record_id"] for line in (run / "pairs.jsonl").read_text().splitlines()
    ]


@pytest.mark.parametrize("kill_after_completions", [3, 17, 40])
def test_kill9_then_resume_gives_identical_records(tmp_path, example_files, kill_after_completions):
    profiles = [str(f) for f in example_files]
    run, ref = tmp_path / "run", tmp_path / "ref"
    script = tmp_path / "job.py"
    script.write_text(JOB.format(root=str(ROOT), out=str(run), profiles=profiles))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            if Store(run / "store.sqlite").count_completions() >= kill_after_completions:
                break
        except Exception:
            continue
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "pairs.jsonl").exists()  # killed before the end: nothing half-written
    resumed = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True
    )
    calls_resumed = int(resumed.stdout.split()[1])
    script.write_text(JOB.format(root=str(ROOT), out=str(ref), profiles=profiles))
    full = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    assert calls_resumed < int(
        full.stdout.split()[1]
    )  # the resumed run redid only what was missing
    assert _ids(run) == _ids(ref) and len(set(_ids(run))) == len(_ids(run))
    assert (run / "pairs.jsonl").read_text() == (ref / "pairs.jsonl").read_text()
    assert (run / "summary.json").exists()


# --- the real thing: the embedded model through the CLI ---------------------------------------


def _facet_similarity_gap(pairs: list[dict], profiles: dict) -> tuple[float, float]:
    from gravity.embed import embed
    from gravity.profiles.render import render_profile

    facet_texts = [render_profile(profiles[r["user_id"]], [r["facet"]]) for r in pairs]
    f = embed(facet_texts)
    c = embed([r["chosen"][0]["content"] for r in pairs])
    j = embed([r["rejected"][0]["content"] for r in pairs])
    return float((c * f).sum(1).mean()), float((j * f).sum(1).mean())


def _generate_on_embedded(tmp_path, example_files, facets: str) -> tuple[Path, dict]:
    run = tmp_path / "run"
    args = ["generate", "--out", str(run), "--max-items", "3"]
    args += [part for facet in facets.split(",") for part in ("--facets", facet)]
    for f in example_files:
        args += ["--profiles", str(f)]
    result = _cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert (
        summary["rows_in"]
        == 4 * 3 * len(facets.split(","))
        == summary["written"] + summary["rejected"]
    )
    assert f"{summary['rows_in']} rows in = {summary['written']} written" in result.stdout
    return run, summary


def _check_dataset(tmp_path, run, example_profiles, tiny_model):
    from datasets import load_from_disk
    from trl import DPOConfig, DPOTrainer

    assert (
        _cli("export", str(run), "--out", str(tmp_path / "data"), "--test-size", "0.25").returncode
        == 0
    )
    dd = load_from_disk(str(tmp_path / "data"))
    cols = {
        "prompt",
        "chosen",
        "rejected",
        "record_id",
        "user_id",
        "item_id",
        "country",
        "facet",
        "scenario",
        "strategy",
        "mode",
        "generator_model",
        "template_hashes",
        "seed",
    }
    assert cols <= set(dd["train"].column_names)
    assert set(dd["train"]["user_id"]).isdisjoint(dd["test"]["user_id"])
    DPOTrainer(
        model=str(tiny_model),
        args=DPOConfig(
            output_dir=str(tmp_path / "t"),
            max_steps=1,
            report_to="none",
            save_strategy="no",
            bf16=False,
            per_device_train_batch_size=2,
        ),
        train_dataset=dd["train"],
    ).train()
    pairs = [json.loads(line) for line in (run / "pairs.jsonl").read_text().splitlines()]
    chosen_sim, rejected_sim = _facet_similarity_gap(pairs, {p.id: p for p in example_profiles})
    assert chosen_sim > rejected_sim, (chosen_sim, rejected_sim)
    return chosen_sim, rejected_sim


def test_generate_on_embedded_model(tmp_path, example_files, example_profiles, tiny_model):
    """4 readers x 3 books on the embedded model (values facet): a dataset TRL accepts, whose
    chosen texts are closer to the reader's facet text than the rejected ones."""
    run, summary = _generate_on_embedded(tmp_path, example_files, "values")
    assert summary["written"] >= 6
    _check_dataset(tmp_path, run, example_profiles, tiny_model)


@pytest.mark.slow
def test_generate_on_embedded_model_all_facets(
    tmp_path, example_files, example_profiles, tiny_model
):
    run, _ = _generate_on_embedded(tmp_path, example_files, "interests,values,personality,culture")
    _check_dataset(tmp_path, run, example_profiles, tiny_model)
    naive = _cli(
        "generate",
        "--out",
        str(tmp_path / "naive"),
        "--max-items",
        "1",
        "--mode",
        "naive",
        "--profiles",
        str(example_files[0]),
    )
    assert naive.returncode == 0, naive.stderr[-2000:]


# --- requirements, contrast genres, trimming counts -------------------------------------------


def test_missing_embedding_model_fails_before_any_llm_call(tmp_path, example_profiles, monkeypatch):
    """The default near-duplicate filter needs sentence-transformers: without it the run stops
    before generating anything, naming the field and the fix."""
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import now fails
    backend = WriterBackend()
    cfg = _cfg(filters=FilterConfig(min_words=5))  # near_duplicate_threshold: default 0.95
    with pytest.raises(GravityError, match=r"filters\.near_duplicate_threshold: .*gravity\[eval\]"):
        _run(tmp_path, example_profiles, cfg, backend)
    assert backend.seen == []
    assert not (tmp_path / "run").exists()
    # Disabling the check is the documented way out, and then the run goes ahead.
    assert _run(tmp_path, example_profiles, _cfg(facets=["values"]), backend).summary["written"]


def test_contrasting_readers_draw_from_the_configured_genres(tmp_path, example_profiles):
    reader = next(p for p in example_profiles if p.interests and p.interests.genres)
    pool = ["zz-cartography", "zz-beekeeping", "zz-opera", *reader.interests.genres]
    backend = WriterBackend()
    cfg = _cfg(facets=["interests"], rejected_strategy="contrasting", contrast_genres=pool)
    _run(tmp_path, [reader], cfg, backend)
    contrasting = [
        r.messages[-1].content for r in backend.seen if "zz-cartography" in r.messages[-1].content
    ]
    assert len(contrasting) == 2  # one contrasting description per book (max_items=2)
    assert all("zz-beekeeping" in text and "zz-opera" in text for text in contrasting)


@pytest.mark.parametrize("cut", ["judge", "everything"])
def test_trimmed_count_ignores_the_quality_judge(tmp_path, example_profiles, cut):
    """Only descriptions and scenarios are trimmed at a sentence; a judge verdict that hits its
    8-token limit is not a trimmed output."""

    class CutBackend(WriterBackend):
        def generate(self, requests, params, seeds=None):
            outs = super().generate(requests, params, seeds)
            hit = [
                cut == "everything" or "Which description is better" in r.messages[-1].content
                for r in requests
            ]
            return [
                o.model_copy(update={"finish_reason": "length"}) if h else o
                for o, h in zip(outs, hit)
            ]

    cfg = _cfg(mode="naive", facets=["values"])
    s = _run(tmp_path, example_profiles[:2], cfg, CutBackend()).summary
    assert s["rows_in"] == 4 and s["written"] > 0
    # naive mode: two candidate descriptions per row, each ending at a full sentence.
    assert s["outputs_trimmed_at_sentence"] == (0 if cut == "judge" else 2 * s["rows_in"])
