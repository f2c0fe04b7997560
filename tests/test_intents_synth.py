"""The intent graph in synthesis: books the graph recommends, the intents facet (the reader's
path to the book) and other_intent hard negatives; checked against the graph's own edges."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from gravity.errors import GravityError
from gravity.events import read_events_dir
from gravity.events.books import books_from_events
from gravity.events.importers import import_events
from gravity.events.infer import InferConfig, infer_profiles
from gravity.intents.build import build_graph
from gravity.intents.config import BuildConfig, ScorerConfig
from gravity.intents.graph import write_graph
from gravity.intents.select import IntentIndex
from gravity.llm.engine import Engine
from gravity.store import Store
from gravity.synth import GenerateConfig, synthesize
from gravity.synth.config import FilterConfig
from tests.fakes import ScriptedBackend, WriterBackend
from tests.test_intents import BX, IntentBackend

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NO_DEDUPE = FilterConfig(min_words=5, near_duplicate_threshold=None)
THEMES = [
    "sail across a stormy ocean",
    "cook a feast for the family",
    "climb a mountain at dawn",
    "grieve a lost parent",
    "start a small business",
    "survive a harsh winter",
]


class ThemedIntents(IntentBackend):
    """The author's intents plus one theme per title, so that a book also serves an intent its
    author's other readers do not all hold."""

    def _text(self, prompt: str, seed: int) -> str:
        text = super()._text(prompt, seed)
        title = re.search(r'^Book: "(.*?)"', prompt)
        if title is None or not text.startswith("{"):
            return text
        data = json.loads(text)
        data["intents"].append(THEMES[sum(map(ord, title.group(1))) % len(THEMES)])
        return json.dumps(data)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The Book-Crossing fixture: events, a built graph (fake extraction, small scorer), the
    readers inferred from the events, and the events' catalog."""
    root = tmp_path_factory.mktemp("intents-synth")
    import_events("bookcrossing", [BX], root / "events")
    data = read_events_dir(root / "events")
    engine = Engine(ThemedIntents(), Store(root / "x.sqlite"), progress=False)
    cfg = BuildConfig(scorer=ScorerConfig(dim=8, epochs=3, batch_size=256))
    write_graph(build_graph(data, cfg, engine=engine, progress=False), root / "graph")
    readers = infer_profiles(
        data, InferConfig(min_events=4, text_inference=False, tag_items=False)
    ).profiles
    return {
        "root": root,
        "events": root / "events",
        "graph": root / "graph",
        "index": IntentIndex.load(root / "graph"),
        "readers": readers,
        "catalog": books_from_events(data),
    }


def _edges(index: IntentIndex, relation: str) -> list[tuple[str, str, float]]:
    return index.scorer.graph.edges_of(relation)


def _served(index: IntentIndex, book: str) -> set[str]:
    labels = index.scorer.labels
    return {labels[d] for s, d, _ in _edges(index, "serves") if s == f"i:{book}"}


def _held(index: IntentIndex, user: str) -> set[str]:
    labels = index.scorer.labels
    return {labels[d] for s, d, _ in _edges(index, "holds") if s == f"u:{user}"}


def _learned(index: IntentIndex, book: str) -> set[str]:
    sc = index.scorer
    fit = [(float(sc.score(index.items[book], "serves", c)), int(c)) for c in sc.intents]
    best = sorted(fit, key=lambda x: (-x[0], x[1]))[:3]
    return {sc.labels[sc.ids[c]] for _, c in best}


def test_recommend_is_the_top_of_the_scores_over_unrated_graph_books(world) -> None:
    index, catalog = world["index"], world["catalog"]
    reader = world["readers"][0]
    rated = {d[2:] for s, d, _ in _edges(index, "rated") if s == f"u:{reader.id}"}
    books = index.recommend(reader.id, catalog, 3)
    assert len(books) == 3 and [b.id for b in books] == sorted(b.id for b in books)
    assert not {b.id for b in books} & rated
    # By hand: score every unrated catalog book that is an item, take the best three.
    u = index.users[reader.id]
    scores = index.scorer.item_scores([u])[0]
    pool = [b for b in catalog if b.id in index.items and b.id not in rated]
    best = sorted(pool, key=lambda b: (-scores[index.column[index.items[b.id]]], pool.index(b)))
    assert {b.id for b in books} == {b.id for b in best[:3]}
    # A catalog that holds only books the reader rated, or none of the graph: nothing.
    assert index.recommend(reader.id, [b for b in catalog if b.id in rated], 3) == []
    assert index.recommend("not-a-reader", catalog, 3) == []


def _by_label(index: IntentIndex) -> dict[str, int]:
    sc = index.scorer
    return {sc.labels[sc.ids[c]]: int(c) for c in sc.intents}


def test_paths_and_other_intents_follow_the_graph(world) -> None:
    """By hand from the graph's edges and the scorer: the path goes through the best intent
    the reader holds and the book serves where there is one (else the book's, else the
    scorer's); the other intent is, of the book's intents the reader does not hold, the one the
    scorer rates lowest for the reader."""
    index = world["index"]
    sc, node = index.scorer, _by_label(index)

    def fit(user: int, item: int, label: str) -> float:
        c = node[label]
        return float(sc.score(user, "holds", c) + sc.score(item, "serves", c))

    sources, checked = set(), 0
    for reader in world["readers"]:
        for book in world["catalog"]:
            path = index.path(reader.id, book.id)
            if book.id not in index.items:
                assert path is None
                continue
            u, i = index.users[reader.id], index.items[book.id]
            served, held = _served(index, book.id), _held(index, reader.id)
            assert path is not None
            sources.add(path.source)
            if served & held:
                assert path.source == "graph" and path.user_holds > 0
                best = max(sorted(served & held), key=lambda lab: (fit(u, i, lab), -node[lab]))
                assert path.intent == best
            elif served:
                assert path.source == "book" and path.intent in served
            else:
                assert path.source == "learned"
                served = _learned(index, book.id)
            other = index.other_intent(reader.id, book.id, path.intent)
            candidates = served - held - {path.intent}
            if candidates:
                lowest = min(
                    candidates,
                    key=lambda lab: (float(sc.score(u, "holds", node[lab])), node[lab]),
                )
                assert other == lowest
                checked += 1
            else:
                assert other is None
    assert checked >= 5 and "graph" in sources
    assert index.path("not-a-reader", world["catalog"][0].id) is None


def test_a_graph_built_with_a_split_never_recommends_the_held_out_ratings(world, tmp_path):
    """--split keeps a reader's held-out ratings out of the graph's edges; they are still books
    the reader rated. A split file that is gone is an error, not silently ignored."""
    from gravity.intents.evaluate import make_split, read_split, write_split

    data = read_events_dir(world["events"])
    write_split(make_split(data, None, seed=0, share=0.5), tmp_path / "split.parquet")
    heldout, desc = read_split(tmp_path / "split.parquet")
    engine = Engine(ThemedIntents(), Store(world["root"] / "x.sqlite"), progress=False)
    cfg = BuildConfig(scorer=ScorerConfig(dim=8, epochs=3, batch_size=256))
    graph = build_graph(data, cfg, split=desc, heldout=heldout, engine=engine, progress=False)
    write_graph(graph, tmp_path / "g")
    index = IntentIndex.load(tmp_path / "g")
    held_books: dict[str, set[str]] = {}
    for user, item in heldout:
        held_books.setdefault(user, set()).add(item)
    checked = 0
    for reader in world["readers"]:
        if reader.id not in held_books:
            continue
        recs = {b.id for b in index.recommend(reader.id, world["catalog"], 40)}
        assert recs and not recs & held_books[reader.id]
        in_graph = {b for b in held_books[reader.id] if b in index.items}  # others: no node
        assert in_graph <= index.rated_books(reader.id)
        checked += 1
    assert checked >= 5
    (tmp_path / "split.parquet").unlink()
    with pytest.raises(GravityError, match="split.parquet, which is gone"):
        IntentIndex.load(tmp_path / "g")


def _config(world, **update) -> GenerateConfig:
    base = {
        "facets": ["intents", "values"],
        "max_items": 2,
        "item_selection": "intents",
        "rejected_strategy": "other_intent",
        "intent_graph": world["graph"],
        "catalog": world["root"] / "catalog.jsonl",
        "filters": NO_DEDUPE,
    }
    if not base["catalog"].is_file():
        base["catalog"].write_text(
            "".join(json.dumps(b.model_dump(mode="json")) + "\n" for b in world["catalog"])
        )
    return GenerateConfig(**{**base, **update})


def test_synthesis_with_the_graph(world, tmp_path, example_profiles) -> None:
    """Graph readers get the graph's books; the intents facet is written for the path's
    intent and its negative for an intent the book serves that the reader does not hold; a
    sampled reader (not in the graph) gets random books and no intents pairs, all counted."""
    index = world["index"]
    readers = world["readers"][:4]
    stranger = example_profiles[0]
    backend = WriterBackend()
    engine = Engine(backend, Store(tmp_path / "s.sqlite"), progress=False)
    cfg = _config(world)
    result = synthesize([*readers, stranger], cfg, tmp_path / "run", engine=engine, progress=False)
    s = result.summary
    assert s["item_selection"] == {"graph": 4, "random: not in the graph": 1}
    assert s["rows_in"] == s["written"] + s["rejected"] == 5 * 2 * 2
    for reader in readers:
        want = {b.id for b in index.recommend(reader.id, world["catalog"], 2)}
        got = {r["item_id"] for r in result.records + result.rejects if r["user_id"] == reader.id}
        assert got == want
    prompts = [r.messages[-1].content for r in backend.seen]
    intents_records = [r for r in result.records if r["facet"] == "intents"]
    assert intents_records
    for r in intents_records:
        path = index.path(r["user_id"], r["item_id"])
        assert r["intent"] == path.intent and r["intent_source"] == path.source
        assert r["intent_rejected"] in _served(index, r["item_id"]) - _held(index, r["user_id"])
        assert r["intent_rejected"] != r["intent"]
        # The chosen side's scenario and the rejected side were written for those intents.
        assert any(
            f"What this reader looks for in a book: {r['intent']}." in p and "Situation" not in p
            for p in prompts
        )
        assert any(
            f"What this reader looks for in a book: {r['intent_rejected']}." in p for p in prompts
        )
    for r in result.records:
        if r["facet"] == "values":  # other_intent is the intents facet's: generic negatives
            assert r["intent_rejected"] is None and r["strategy"] == "generic"
        else:
            assert r["strategy"] == "other_intent"
    stranger_rows = [r for r in result.records + result.rejects if r["user_id"] == stranger.id]
    assert {r["reason"] for r in stranger_rows if r["facet"] == "intents"} == {"missing_facet"}
    assert all(r["intent"] is None for r in stranger_rows)
    # Every rejected pair is counted with its reason; the card counts intents.
    assert sum(s["rejects_by_reason"].values()) == s["rejected"]
    # Pairs per intent: the pairs written for an intent (the values pairs carry their path's
    # intent too, but were not written for it).
    assert sum(s["by_intent"].values()) == len(intents_records)
    assert any(r["intent"] for r in result.records if r["facet"] == "values")
    from gravity.export import export_run

    export_run(tmp_path / "run", tmp_path / "data", "hf", 0.0, 0)
    card = (tmp_path / "data" / "README.md").read_text()
    assert "## Pairs per intent" in card
    for intent, n in s["by_intent"].items():
        assert f"| {intent} | {n} |" in card


def test_a_book_with_no_foreign_intent_is_a_counted_reject(world, tmp_path) -> None:
    """other_intent needs an intent the book serves and the reader does not hold: without one,
    the pair is rejected before any call (no_other_intent), never given an easy negative."""
    index = world["index"]
    cases = [
        (reader, book)
        for reader in world["readers"]
        for book in world["catalog"]
        if (p := index.path(reader.id, book.id)) is not None
        and index.other_intent(reader.id, book.id, p.intent) is None
    ]
    assert cases, "the fixture has a reader who holds every intent of some book"
    reader, book = cases[0]
    single = tmp_path / "one.jsonl"
    single.write_text(json.dumps(book.model_dump(mode="json")) + "\n")
    backend = WriterBackend()
    engine = Engine(backend, Store(tmp_path / "s.sqlite"), progress=False)
    cfg = _config(world, facets=["intents"], catalog=single, item_selection="random", max_items=1)
    s = synthesize([reader], cfg, tmp_path / "run", engine=engine, progress=False).summary
    assert s["rejects_by_reason"] == {"no_other_intent": 1} and s["written"] == 0
    assert backend.seen == []


def test_intent_settings_are_checked_before_any_call(world, tmp_path) -> None:
    with pytest.raises(ValidationError, match="needs intent_graph"):
        GenerateConfig(item_selection="intents")
    with pytest.raises(ValidationError, match="needs intent_graph"):
        GenerateConfig(facets=["intents"])
    with pytest.raises(ValidationError, match="add it to facets"):
        GenerateConfig(rejected_strategy="other_intent", intent_graph=world["graph"])
    with pytest.raises(ValidationError, match="no opposite pole"):
        GenerateConfig(
            facets=["intents"], rejected_strategy="contrasting", intent_graph=world["graph"]
        )
    cfg = _config(world, intent_graph=tmp_path / "nowhere")
    engine = Engine(WriterBackend(), Store(tmp_path / "s.sqlite"), progress=False)
    with pytest.raises(GravityError, match="intent_graph: .*nowhere is not a graph folder"):
        synthesize(world["readers"][:1], cfg, tmp_path / "run", engine=engine, progress=False)
    assert not (tmp_path / "run").exists()
    # A graph of other events: no catalog book is one of its items.
    other = tmp_path / "other.jsonl"
    other.write_text(
        json.dumps(
            {"id": "zz-1", "title": "Unknown", "author": "Nobody", "description": "A book " * 3}
        )
        + "\n"
    )
    with pytest.raises(GravityError, match="none of the 1 catalog books is an item"):
        synthesize(
            world["readers"][:1],
            _config(world, catalog=other),
            tmp_path / "run2",
            engine=engine,
            progress=False,
        )


def test_naive_pairs_use_the_same_books(world, tmp_path) -> None:
    """The naive baseline writes for the books the graph recommends too (a fair comparison),
    one pair per facet and scenario as in gravity mode."""
    readers = world["readers"][:3]
    engine = Engine(WriterBackend(), Store(tmp_path / "s.sqlite"), progress=False)
    cfg = _config(world, mode="naive")
    result = synthesize(readers, cfg, tmp_path / "run", engine=engine, progress=False)
    rows = result.records + result.rejects
    assert len(rows) == 3 * 2 * 2
    index = world["index"]
    for reader in readers:
        want = {b.id for b in index.recommend(reader.id, world["catalog"], 2)}
        assert {r["item_id"] for r in rows if r["user_id"] == reader.id} == want


def _run_config(world, out: Path, **generate):
    """configs/bookcrossing-intents.yaml on the fixture's events and graph."""
    import yaml

    from gravity.config import RunConfig

    data = yaml.safe_load((CONFIGS / "bookcrossing-intents.yaml").read_text())
    for stage in ("profiles", "heldout"):
        data[stage]["events"] = str(world["events"])
        data[stage]["infer"].pop("max_users_per_country")
        data[stage]["infer"]["min_events"] = 4
    data["catalog"] = str(world["events"])
    data["out_dir"] = str(out)
    data["generate"].update({"intent_graph": str(world["graph"]), **generate})
    return RunConfig.model_validate(data)


def test_the_plan_counts_the_calls_synthesis_makes(world, tmp_path) -> None:
    """`gravity run --dry-run` of the intents config: its scenario and description calls are the
    ones the synthesis then makes (slots without a path or a foreign intent make none); with the
    graph not built yet, it says so and counts as if every slot had one."""
    from gravity.plan import build_plan
    from gravity.run import _write_books, prepare_run

    cfg = _run_config(world, tmp_path / "run", filters=NO_DEDUPE.model_dump())
    plan = build_plan(cfg)
    readers, _, train_books, _ = prepare_run(cfg)
    _write_books(tmp_path / "train.jsonl", train_books)
    backend = WriterBackend()
    engine = Engine(backend, Store(tmp_path / "s.sqlite"), progress=False)
    gen = cfg.generate.model_copy(update={"catalog": tmp_path / "train.jsonl"})
    s = synthesize(readers, gen, tmp_path / "pairs", engine=engine, progress=False).summary
    prompts = [r.messages[-1].content for r in backend.seen]
    scenarios = sum("describe a concrete situation" in p for p in prompts)
    described = sum("Write a description of this book" in p for p in prompts)
    steps = {st.step: st.calls for st in plan.steps if st.stage == "synthesis (gravity)"}
    assert steps["scenarios"] == scenarios > 0
    assert steps["chosen descriptions"] + steps["rejected descriptions (other_intent)"] == described
    assert plan.modes["gravity"]["slots"] == s["rows_in"]
    assert s["rejects_by_reason"].get("no_other_intent", 0) + scenarios == s["rows_in"]
    assert not (tmp_path / "run").exists()
    unbuilt = build_plan(
        _run_config(world, tmp_path / "run", intent_graph=str(tmp_path / "not-yet"))
    )
    assert any("not built yet" in w for w in unbuilt.warnings)
    assert {st.step: st.calls for st in unbuilt.steps}["scenarios"] == s["rows_in"]


@pytest.mark.slow
def test_gravity_run_with_the_intents_config_end_to_end(world, tmp_path) -> None:
    """`gravity run` on the intents config (fixture events and graph, embedded model, small
    sizes): pairs with intents, three trained systems, a report."""
    import subprocess
    import sys

    import yaml

    cfg = _run_config(world, tmp_path / "run")
    data = cfg.model_dump(mode="json")
    data["train"].update(max_steps=1)
    data["evaluate"].update(bootstrap=200, min_readers=2, max_new_tokens=48)
    data["generate"].update(description_tokens=96, max_items=1)
    data["heldout_items"] = 4
    data["profiles"]["infer"]["max_users"] = 4
    data["heldout"]["infer"].update(countries=None, max_users=3)  # the fixture has few
    path = tmp_path / "intents.yaml"
    path.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [sys.executable, "-m", "gravity", "run", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = [
        json.loads(line)
        for line in (tmp_path / "run" / "pairs-gravity" / "pairs.jsonl").read_text().splitlines()
    ]
    assert any(r["facet"] == "intents" and r["intent_rejected"] for r in records)
    summary = json.loads((tmp_path / "run" / "pairs-gravity" / "summary.json").read_text())
    assert summary["item_selection"].get("graph", 0) > 0
    assert (tmp_path / "run" / "eval" / "report.md").is_file()


def test_a_graph_that_cannot_serve_the_run_is_refused_before_any_call(
    world, tmp_path, example_profiles
) -> None:
    """No reader of the run is a user of the graph (sampled readers, or pseudonymized ids), or
    the intents facet with a graph that has no intent: one line naming intent_graph, no call."""
    backend = WriterBackend()
    engine = Engine(backend, Store(tmp_path / "s.sqlite"), progress=False)
    with pytest.raises(GravityError, match="none of the 2 readers is a user of"):
        synthesize(example_profiles[:2], _config(world), tmp_path / "a", engine=engine)
    pseudonymous = [p.model_copy(update={"id": f"u-{p.id}"}) for p in world["readers"][:2]]
    with pytest.raises(GravityError, match="--pseudonymize"):
        synthesize(pseudonymous, _config(world), tmp_path / "b", engine=engine)
    # A graph whose every extraction was rejected has users and items but no intent.
    data = read_events_dir(world["events"])
    junk = Engine(ScriptedBackend(script=[]), Store(tmp_path / "j.sqlite"), progress=False)
    cfg = BuildConfig(max_items=5, scorer=ScorerConfig(dim=8, epochs=1, batch_size=256))
    write_graph(build_graph(data, cfg, engine=junk, progress=False), tmp_path / "empty")
    assert IntentIndex.load(tmp_path / "empty").n_intents == 0
    with pytest.raises(GravityError, match="has no intents"):
        synthesize(
            world["readers"][:2],
            _config(world, intent_graph=tmp_path / "empty"),
            tmp_path / "c",
            engine=engine,
        )
    assert backend.seen == [] and not any((tmp_path / d).exists() for d in "abc")


def test_a_reader_the_graph_cannot_recommend_to_gets_unrated_books_or_none(world) -> None:
    """A reader known to the graph with no unrated graph book in the catalog: books from the
    rest of the catalog, never one they rated; none at all when they rated every book."""
    from collections import Counter

    from gravity.books import Book
    from gravity.synth.pipeline import build_slots

    index = world["index"]
    reader = world["readers"][0]
    rated = index.rated_books(reader.id)
    own = [b for b in world["catalog"] if b.id in rated]
    stranger = Book(id="zz-1", title="Unknown", author="Nobody", description="A book " * 3)
    cfg = _config(world, max_items=3)
    sources: Counter[str] = Counter()
    slots = build_slots([reader], [*own, stranger], cfg, index, sources)
    assert {s.book.id for s in slots} == {"zz-1"}
    assert sources == {"random: no unrated catalog book in the graph": 1}
    sources.clear()
    assert build_slots([reader], own, cfg, index, sources) == []
    assert sources == {"none: the reader rated every catalog book": 1}
