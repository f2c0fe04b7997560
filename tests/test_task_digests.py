"""The default task (book descriptions) renders the same prompts, pairs and exported dataset as
before tasks became data (issue 22): digests recorded at 681ec28, before the refactor.

Records of later versions rename ``book_id`` to ``item_id`` and add the task's name and digest;
``_as_before`` maps them back, so everything else must be byte-identical.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from gravity.books import load_catalog
from gravity.profiles.io import load_profiles
from gravity.profiles.render import render_profile
from gravity.prompts import render
from gravity.synth.config import FilterConfig
from gravity.synth.tasks import (
    DescriptionRow,
    DescriptionTask,
    JudgeRow,
    QualityJudgeTask,
    ScenarioRow,
    ScenarioTask,
)
from gravity.task import deployed_messages

ROOT = Path(__file__).resolve().parent.parent

PROMPTS = "2b33f1cb70cf8024464d83800e9742f2a36a61fa00d428a5a280ec33f9f858f7"
PAIRS = {
    "gravity": "2a41a4222acc20a1386ef02a2d296741ac31110f019f7f5061a37c37ad099751",
    "naive": "fe0777f4bfb1ca25b6e79ec5b7929257fc05968c6c3107b7d4104e12a30d6477",
}
NO_REJECTS = "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
EXPORT = {
    ("gravity", "test.jsonl"): "3db829c856b85e5cd3d41b2f345fc65f47186db86d38069f4baf7cff660642f7",
    ("gravity", "train.jsonl"): "56b82c0d5a16d2cc81e9a780b07e33df3d6b788e17581bd338078139d1f8bcbd",
    ("naive", "test.jsonl"): "f6b446851b0636d2108d30a8d75de04a064fd3c14d24b39ff8f12f78046cf3a1",
    ("naive", "train.jsonl"): "c839cdf9751a4c2e1d68402bab7a2c9d6bdbc008543f564960af22eaa22412ea",
}


def _digest(obj: object) -> str:
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _as_before(row: dict) -> dict:
    """A record of today mapped to the fields it had before tasks (renames undone)."""
    row = {("book_id" if k == "item_id" else k): v for k, v in row.items()}
    assert row.pop("task") == "book-description"
    assert len(row.pop("task_digest")) == 16
    return row


def _prompts() -> list:
    profiles = [p for f in sorted((ROOT / "profiles/examples").glob("*")) for p in load_profiles(f)]
    catalog = load_catalog()
    desc = DescriptionTask(FilterConfig())
    out: list = []
    candidates = [{"label": "A", "text": "x"}, {"label": "B", "text": "y"}]
    for p in profiles:
        pt = render_profile(p)
        for b in catalog:
            out.append(deployed_messages(p, b))
            out.append(
                ScenarioTask().build_messages(ScenarioRow(b, "values", "FACET")).model_dump()
            )
            row = DescriptionRow(b, "values", "FACET", "SCEN")
            out.append(desc.build_messages(row).model_dump())
            row = DescriptionRow(b, "culture", "FACET", None)
            out.append(desc.build_messages(row).model_dump())
            for ans in ("letter", "json"):
                kw = {"profile_text": pt, "book": b, "answer": ans}
                out.append(render("judge_pair.j2", first="X", second="Y", **kw))
                out.append(render("judge_persona.j2", candidates=candidates, **kw))
                out.append(render("judge_interest.j2", text="T", **kw))
    for b in catalog:
        out.append(deployed_messages(None, b))
        out.append(desc.build_messages(DescriptionRow(b)).model_dump())
        out.append(QualityJudgeTask().build_messages(JudgeRow(b, "a", "b")).model_dump())
        out.append(QualityJudgeTask().build_messages(JudgeRow(b, "a", "b"), "json").model_dump())
    assert len(out) == 3168
    return out


def test_book_task_prompts_are_unchanged() -> None:
    assert _digest(_prompts()) == PROMPTS


def test_demo_pairs_and_export_are_unchanged(tmp_path: Path) -> None:
    from gravity.config import RunConfig, load_yaml_model
    from gravity.export import export_run
    from gravity.llm.engine import Engine
    from gravity.run import prepare_run
    from gravity.store import Store
    from gravity.synth import synthesize
    from tests.fakes import WriterBackend

    cfg = load_yaml_model(ROOT / "configs/demo.yaml", RunConfig)
    readers, _, train_items, _ = prepare_run(cfg)
    catalog = tmp_path / "items.jsonl"
    catalog.write_text("".join(json.dumps(b.model_dump(mode="json")) + "\n" for b in train_items))
    for mode in ("gravity", "naive"):
        filters = cfg.generate.filters.model_copy(update={"near_duplicate_threshold": None})
        gen = cfg.generate.model_copy(update={"mode": mode, "catalog": catalog, "filters": filters})
        engine = Engine(WriterBackend(), Store(tmp_path / f"{mode}.sqlite"), progress=False)
        synthesize(readers, gen, tmp_path / mode, engine=engine)
        lines = (tmp_path / mode / "pairs.jsonl").read_text().splitlines()
        records = [_as_before(json.loads(line)) for line in lines]
        assert len(records) == 8
        assert _digest(records) == PAIRS[mode]
        lines = (tmp_path / mode / "rejects.jsonl").read_text().splitlines()
        assert _digest([_as_before(json.loads(line)) for line in lines]) == NO_REJECTS
        export_run(tmp_path / mode, tmp_path / f"export-{mode}", "jsonl", test_size=0.25, seed=0)
        for name in ("test.jsonl", "train.jsonl"):
            lines = (tmp_path / f"export-{mode}" / name).read_text().splitlines()
            rows = [_as_before(json.loads(line)) for line in lines]
            assert _digest(rows) == EXPORT[(mode, name)], (mode, name)


# --- events side: the item-tagging and trait-inference prompts of the book task ------------------
# Recorded at c34b41d, before these prompts became properties of the task (events side of #22).

EVENTS_PROMPTS = "35d721b3b5191f8eea36afd37b2ef57d05e01867d35be93bcc5fabd04530b74a"


def _events_prompts() -> list:
    from gravity.events import read_events_dir
    from gravity.events.importers import import_events
    from gravity.events.infer import InferConfig, llm_requests
    from gravity.events.tasks import ItemTags, TextTraits, tag_requests, traits_requests

    none = dict.fromkeys(("title", "author", "year", "publisher", "description"))
    items = [
        {**none, "title": "T"},
        {**none, "title": "Dune", "author": "Frank Herbert", "year": 1965, "publisher": "Chilton"},
        {**none, "title": "{{ 7*7 }}", "author": "A {% raw %}", "description": "word " * 400},
        {**none, "title": "Long", "author": "B", "publisher": "P", "description": "x" * 1300},
    ]
    reviews = [["Loved it, {{ evil }}.", "Too long."], ["One review only."], []]
    out: list = [r.model_dump() for r in tag_requests(items)]
    out += [r.model_dump() for r in traits_requests(reviews)]
    out += [ItemTags.model_json_schema(), TextTraits.model_json_schema()]  # structured output
    fixtures = ROOT / "tests" / "fixtures" / "events"
    sources = {
        "bookcrossing": [fixtures / "bookcrossing"],
        "amazon": [fixtures / "amazon" / "Books.jsonl", fixtures / "amazon" / "meta_Books.jsonl"],
    }
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, paths in sources.items():
            import_events(name, paths, Path(tmp) / name)
            steps = llm_requests(read_events_dir(Path(tmp) / name), InferConfig())
            out += [[r.model_dump() for r in steps[s]] for s in sorted(steps)]
    return out


def test_book_task_events_prompts_are_unchanged() -> None:
    assert _digest(_events_prompts()) == EVENTS_PROMPTS


# --- events side: the book catalog built from an events folder -----------------------------------
# Recorded with gravity/events/books.py of b7d05db, before the task's item schema built it: the
# four fixture folders (two catalog sizes each) and a hand-made folder of edge cases (text over
# the schema's limits, a description too short, seven categories, items missing a title or an
# author).

EVENTS_CATALOG = "ef7d94be08824d5c08cf23df60ad53ee2ad75d61c74e0033f13e70cee62ac861"


def _edge_events(tmp: Path) -> Path:
    from gravity.events.importers import import_events

    src = tmp / "edge-src"
    src.mkdir()
    words = " ".join(f"word{k}" for k in range(900))  # about 6,000 characters
    items = [
        {"id": "long", "title": "T" * 400, "author": "A" * 300, "description": words},
        {"id": "short", "title": "Short &amp; sweet", "author": "B", "description": "tiny"},
        {"id": "cats", "title": "Cats", "author": "C", "categories": [f"c{k}" for k in range(7)]},
        {"id": "noauthor", "title": "Nobody's", "description": "A book without an author."},
        {"id": "notitle", "author": "D", "year": 1999},
        {"id": "plain", "title": "Plain", "author": "E", "year": 2001, "publisher": "P"},
    ]
    (src / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    (src / "users.csv").write_text("id,location,country,age\nu1,,US,30\nu2,,BR,40\n")
    rows = [(u, i["id"]) for u in ("u1", "u2") for i in items]
    (src / "events.csv").write_text(
        "user_id,kind,action,item_id,value\n"
        + "".join(f"{u},personal,rate,{i},4\n" for u, i in rows)
    )
    import_events("events", [src], tmp / "edge")
    return tmp / "edge"


def _events_catalogs(tmp: Path, build) -> list:
    from gravity.events import read_events_dir
    from gravity.events.importers import import_events

    fixtures = ROOT / "tests" / "fixtures" / "events"
    sources = {
        "bookcrossing": [fixtures / "bookcrossing"],
        "amazon": [fixtures / "amazon" / "Books.jsonl", fixtures / "amazon" / "meta_Books.jsonl"],
        "goodreads": [fixtures / "goodreads_library_export.csv"],
        "events": [fixtures / "generic"],
    }
    folders = []
    for name, paths in sources.items():
        import_events(name, paths, tmp / name)
        folders.append(tmp / name)
    folders.append(_edge_events(tmp))
    return [
        [b.model_dump(mode="json") for b in build(read_events_dir(folder), top)]
        for folder in folders
        for top in (200, 3)
    ]


def test_book_catalog_from_events_is_unchanged(tmp_path: Path) -> None:
    from gravity.events.books import books_from_events

    catalogs = _events_catalogs(tmp_path, lambda data, top: books_from_events(data, top=top))
    edge = {b["id"]: b for b in catalogs[-2]}
    assert sorted(edge) == ["cats", "long", "plain", "short"]  # hand-made expectations
    assert len(edge["long"]["title"]) == 300 and len(edge["long"]["author"]) == 200
    assert edge["long"]["description"].endswith(" ...") and len(edge["long"]["description"]) < 4000
    assert edge["short"]["description"] is None and edge["cats"]["genres"] == [
        f"c{k}" for k in range(5)
    ]
    assert _digest(catalogs) == EVENTS_CATALOG
