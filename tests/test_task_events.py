"""The events side as part of the task (issue 22): the tag vocabulary and wording of the
item-tagging and trait-inference prompts, the wording prompts name a profile's interests with,
and the catalog an events folder gives a task. Hostile specs fail with one line naming the file
and the field before any model call. (The book task's prompts and catalog stay byte-identical:
tests/test_task_digests.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gravity.cli import app
from gravity.events import read_events_dir
from gravity.events.importers import import_events
from gravity.events.infer import InferConfig, infer_profiles
from gravity.events.tasks import tag_model, tag_requests, traits_requests
from gravity.llm.engine import Engine
from gravity.profiles import load_profiles
from gravity.taskspec import load_task
from tests.fakes import ScriptedBackend

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "events"
ITEM = {
    "title": "Steel kettle",
    "author": "Acme",
    "year": 2020,
    "publisher": None,
    "description": "A kettle.",
}


@pytest.fixture(scope="module")
def bx(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bx") / "events"
    import_events("bookcrossing", [FIX / "bookcrossing"], out)
    return out


@pytest.fixture(scope="module")
def generic(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("generic") / "events"
    import_events("events", [FIX / "generic"], out)
    return out


# --- the tagging and trait-inference prompts speak the task -----------------------------------


def test_product_task_tags_with_its_own_vocabulary_and_words() -> None:
    task = load_task("product-description")
    request = tag_requests([ITEM], task)[0]
    system, user = (m.content for m in request.messages)
    assert system == "You are a careful retail analyst. Answer only with the JSON object asked for."
    assert user.startswith('Product: "Steel kettle" by Acme (2020).')
    assert (
        "Give this product's categories (1 to 3, chosen from: home and kitchen, electronics, "
        in user
    )
    assert "book" not in user.replace("books and media", "").lower()
    assert "genre" not in user
    model = tag_model(task)
    assert set(model.model_fields) == {"categories", "themes"}
    assert model.model_validate({"categories": ["garden"]}).categories == ["garden"]
    with pytest.raises(ValueError):  # a book genre is no product category
        model.model_validate({"categories": ["classics"]})


def test_travel_task_infers_traits_from_a_travellers_reviews() -> None:
    request = traits_requests([["Loved the hike, {{ 7*7 }}."]], load_task("travel-pitch"))[0]
    system, user = (m.content for m in request.messages)
    assert system.startswith("You are a careful travel analyst.")
    assert user.startswith("Here are travel reviews written by one traveller.")
    assert "rate this traveller." in user and "reveal about the traveller." in user
    assert 'Review 1: "Loved the hike, {{ 7*7 }}."' in user  # review text stays literal
    assert "book" not in user and "reader" not in user


class ShopTagger(ScriptedBackend):
    """Tags a product task's items: 'garden' for every item, but answers with book genres for
    'Dune' (which the product vocabulary must refuse)."""

    def _text(self, prompt: str, seed: int) -> str:
        assert "Give this product's categories" in prompt, prompt[:200]
        if '"Dune"' in prompt:
            return json.dumps({"genres": ["classics"], "themes": ["desert"]})
        return json.dumps({"categories": ["garden"], "themes": ["outdoors"]})


def test_infer_profiles_tags_items_in_the_task_vocabulary(bx) -> None:
    backend = ShopTagger()
    cfg = InferConfig(task="product-description", text_inference=False, max_attempts=1)
    result = infer_profiles(read_events_dir(bx), cfg, engine=Engine(backend, progress=False))
    assert backend.seen, "the tagging step asked nothing"
    assert result.item_tags and all(
        t == {"genres": ["garden"], "themes": ["outdoors"]} for t in result.item_tags.values()
    )
    assert "0441013597" not in result.item_tags  # Dune: answered with a book genre, refused
    assert sum(v for k, v in result.llm_rejects.items() if k.startswith("tag_items")) == 1
    tagged = [p for p in result.profiles if p.interests.genres]
    assert tagged and all(p.interests.genres == ["garden"] for p in tagged)


# --- hostile events sections: one line naming the file and the field, before any model call ----


def _task(root: Path, events: dict | None = None, profile: dict | None = None) -> Path:
    """A small user task (a reading-list blurb) whose items can come from an events folder."""
    folder = root / "blurbs"
    folder.mkdir(parents=True)
    spec: dict = {
        "name": "club-blurb",
        "description": "A blurb for a reading club's list.",
        "item": {
            "noun": "pick",
            "plural": "picks",
            "fields": {
                "id": {"type": "str", "required": True},
                "title": {"type": "str", "required": True, "max_length": 12},
                "maker": {"type": "str"},
                "topics": {"type": "list"},
                "published": {"type": "int"},
                "about": {"type": "str", "min_length": 10, "max_length": 200},
            },
        },
        "output": {"name": "blurb", "words": 40},
        "facets": {"values": "what the member's values make them want from a pick"},
    }
    if events is not None:
        spec["events"] = events
    if profile is not None:
        spec["profile"] = profile
    (folder / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


FIELDS = {"title": "title", "maker": "author", "topics": "categories", "published": "year"}

HOSTILE = {
    "empty tag list": (
        {"tags": [], "fields": FIELDS},
        ["task.yaml:", "events.tags:", "at least 1 item"],
    ),
    "blank tag": ({"tags": ["poetry", " "]}, ["task.yaml:", "events.tags:", "1 to 60 characters"]),
    "duplicate tags": ({"tags": ["poetry", "poetry"]}, ["events.tags:", "unique"]),
    "field the item lacks": (
        {"tags": ["poetry"], "fields": {"colour": "title"}},
        ["task.yaml:", "events.fields.colour: not a field of the item"],
    ),
    "id from a column": (
        {"tags": ["poetry"], "fields": {"id": "isbn"}},
        ["events.fields.id: the id comes from the events item's id"],
    ),
    "type a column cannot fill": (
        {"tags": ["poetry"], "fields": {"published": "categories"}},
        ["events.fields.published: a int field cannot come from the column 'categories'"],
    ),
    "unknown column": (
        {"tags": ["poetry"], "fields": {"maker": "brand"}},
        ["task.yaml:", "events.fields.maker:", "'title'"],
    ),
    "unknown events key": ({"tag_list": ["poetry"]}, ["task.yaml:", "events.tag_list:"]),
    # the tagging answer model has this field beside 'themes': these names would replace the
    # vocabulary-checked field (themes) or be read as pydantic configuration (model_config)
    "tag name themes": (
        {"tags": ["poetry"], "tag_name": "themes"},
        ["events.tag_name:", "reserved"],
    ),
    "tag name model_config": (
        {"tags": ["poetry"], "tag_name": "model_config"},
        ["events.tag_name:", "reserved"],
    ),
    "tag name json": ({"tags": ["poetry"], "tag_name": "json"}, ["events.tag_name:", "reserved"]),
    "tags equal but for case": (
        {"tags": ["Poetry", "poetry"]},
        ["events.tags:", "unique (ignoring case and spaces)"],
    ),
    "tag with a newline": ({"tags": ["po\netry"]}, ["events.tags:", "control whitespace"]),
    "blank analyst": ({"tags": ["poetry"], "analyst": "   "}, ["events.analyst:", "blank"]),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_events_section_is_one_line(tmp_path: Path, case: str) -> None:
    events, expected = HOSTILE[case]
    folder = _task(tmp_path, events)
    result = CliRunner().invoke(app, ["tasks", "check", str(folder)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    for part in expected:
        assert part in lines[0], (case, lines[0])


def test_task_without_tags_fails_profiles_infer_before_any_model(tmp_path: Path, no_models) -> None:
    folder = _task(tmp_path)  # no events section: no tags
    out = tmp_path / "p.jsonl"
    args = ["profiles", "infer", "--events", str(tmp_path / "none"), "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--task", str(folder)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    assert (
        f"{folder.resolve() / 'task.yaml'}: events.tags: task 'club-blurb' gives no tags"
        in (lines[0])
    )
    assert "--no-tag-items" in lines[0] and not out.exists()


def test_task_without_tags_infers_with_tagging_off(tmp_path: Path, bx, no_models) -> None:
    folder = _task(tmp_path)
    out = tmp_path / "p.jsonl"
    args = ["profiles", "infer", "--events", str(bx), "-o", str(out), "--task", str(folder)]
    result = CliRunner().invoke(app, [*args, "--no-tag-items", "--no-text-inference"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "p.jsonl.summary.json").read_text())
    assert summary["config"]["task"] == str(folder) and load_profiles(out)


def test_unknown_task_in_profiles_infer_blames_the_flag(tmp_path: Path) -> None:
    args = ["profiles", "infer", "--events", str(tmp_path), "-o", str(tmp_path / "p.jsonl")]
    result = CliRunner().invoke(app, [*args, "--task", "poems"])
    assert result.exit_code == 2
    assert "no task 'poems'" in result.output and len(result.output.strip().splitlines()) == 1


# --- profile wording ----------------------------------------------------------------------------


def _brazil():
    return load_profiles(ROOT / "profiles" / "examples" / "brazil.yaml")[0]


def test_product_prompt_names_interests_in_the_task_words() -> None:
    from gravity.task import deployed_messages

    task = load_task("product-description")
    item = task.load_catalog()[0]
    user = deployed_messages(_brazil(), item, task)[1]["content"]
    assert "Favourite products: Dom Casmurro; The Count of Monte Cristo." in user
    assert "Goals: share books with my family; understand history." in user
    assert "Shopper: " in user and "Interests: " in user
    for book_word in ("Favourite books", "Favourite genres", "Favourite authors", "Reads to"):
        assert book_word not in user
    book = deployed_messages(_brazil(), load_task().load_catalog()[0])[1]["content"]
    assert "Favourite books: Dom Casmurro" in book and "\nReader: " in book


def test_user_task_profile_wording_defaults_and_empty_labels(tmp_path: Path) -> None:
    plain = load_task(_task(tmp_path / "a"))
    text = plain.profile_text(_brazil())
    assert text.startswith("Reader: ") and "Favourite picks: Dom Casmurro" in text
    assert "Interests: " in text and "Favourite books" not in text
    shop = load_task(_task(tmp_path / "b", profile={"person": "member", "favourite_books": ""}))
    text = shop.profile_text(_brazil())
    assert text.startswith("Member: ") and "Dom Casmurro" not in text
    hostile = load_task(_task(tmp_path / "c", profile={"genres": "{{ 7*7 }}"}))
    assert "{{ 7*7 }}: " in hostile.profile_text(_brazil())  # wording is data, never a template


def test_profiles_show_speaks_the_task() -> None:
    path = ROOT / "profiles" / "examples" / "brazil.yaml"
    result = CliRunner().invoke(app, ["profiles", "show", str(path), "--task", "travel-pitch"])
    assert result.exit_code == 0, result.output
    assert "Favourite destinations: Dom Casmurro" in result.output
    assert "Traveller: " in result.output


def test_run_passes_its_task_to_both_reader_sections() -> None:
    from gravity.config import RunConfig

    cfg = RunConfig.model_validate({"task": "travel-pitch"})
    assert cfg.profiles.infer.task == cfg.heldout.infer.task == "travel-pitch"
    with pytest.raises(ValueError, match="one task per run: task 'travel-pitch', profiles.infer"):
        RunConfig.model_validate({"task": "travel-pitch", "profiles": {"infer": {"task": "x"}}})
    cfg = RunConfig.model_validate({"heldout": {"infer": {"task": "travel-pitch"}}})
    assert cfg.generate.task == cfg.profiles.infer.task == "travel-pitch"


# --- the catalog an events folder gives a task ------------------------------------------------


def test_events_catalog_is_validated_by_the_task_schema(tmp_path: Path, generic) -> None:
    from gravity.events.books import items_from_events

    task = load_task(_task(tmp_path, {"tags": ["poetry"], "fields": FIELDS}))
    items = items_from_events(read_events_dir(generic), task)
    assert len(items) == 24  # every titled item of the fixture (the book task: 24 as well)
    model = task.spec.item.model()
    assert all(type(i) is model for i in items)
    by_id = {i.id: i for i in items}
    pride = by_id["0141439513"]
    assert pride.title == "Pride and Pr" and pride.maker == "Jane Austen"  # cut at 12
    assert pride.topics == ("romance", "classics") and pride.published == 2002
    assert pride.about is None  # no events column fills it
    assert [i.id for i in items_from_events(read_events_dir(generic), task, top=2)] == [
        i.id for i in items[:2]
    ]
    rendered = task.render("deployed", pride, profile_text="", language=None)
    assert "- title: Pride and Pr" in rendered and "- topics: romance, classics" in rendered


def test_events_catalog_keeps_free_attributes_where_the_schema_keeps_extra_columns(
    tmp_path: Path, bx
) -> None:
    from gravity.events.books import items_from_events

    folder = _task(tmp_path, {"tags": ["poetry"], "fields": FIELDS})
    spec = yaml.safe_load((folder / "task.yaml").read_text())
    spec["item"]["extra_columns"] = "keep"
    (folder / "task.yaml").write_text(yaml.safe_dump(spec))
    task = load_task(folder)
    items = items_from_events(read_events_dir(bx), task)
    with_publisher = [i for i in items if i.model_extra.get("publisher")]
    assert with_publisher, "Book-Crossing items have publishers"
    item = with_publisher[0]
    assert set(item.model_extra) <= {"publisher", "description", "isbn"}
    shown = task.variables(item)["pick"]  # what templates see: free attributes included
    assert shown.publisher == item.model_extra["publisher"]
    plain = load_task(_task(tmp_path / "plain", {"tags": ["poetry"], "fields": FIELDS}))
    assert all(not i.model_extra for i in items_from_events(read_events_dir(bx), plain))


def test_events_catalog_size_is_the_task_setting(tmp_path: Path, generic) -> None:
    from gravity.events.books import items_from_events

    folder = _task(tmp_path, {"tags": ["poetry"], "fields": FIELDS})
    spec = yaml.safe_load((folder / "task.yaml").read_text())
    spec["max_catalog_items"] = 5
    (folder / "task.yaml").write_text(yaml.safe_dump(spec))
    assert len(items_from_events(read_events_dir(generic), load_task(folder))) == 5
    assert load_task().spec.max_catalog_items == 200


@pytest.mark.parametrize(
    "task, field", [("product-description", "price_band"), ("travel-pitch", "country")]
)
def test_builtin_task_an_events_folder_cannot_serve_is_one_line(
    tmp_path: Path, generic, no_models, task: str, field: str
) -> None:
    config = {
        "out_dir": str(tmp_path / "run"),
        "task": task,
        "catalog": str(generic),
        "heldout_items": 2,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"tasks/{task}/task.yaml: events.fields: the required item field '{field}'" in lines[0]
    assert not (tmp_path / "run").exists()


def test_run_with_a_task_without_tags_fails_before_any_model(tmp_path: Path, bx, no_models) -> None:
    folder = _task(tmp_path)  # no tags
    config = {
        "out_dir": str(tmp_path / "run"),
        "task": str(folder),
        "catalog": str(bx),
        "profiles": {"n_per_country": 0, "events": str(bx), "infer": {"text_inference": False}},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert (
        len(lines) == 1 and "task.yaml: events.tags: task 'club-blurb' gives no tags" in (lines[0])
    )
    assert not (tmp_path / "run").exists()


@pytest.fixture
def fake_models(monkeypatch):
    import gravity.evaluate.runner
    import gravity.synth
    from tests.fakes import WriterBackend

    monkeypatch.setattr(gravity.synth, "make_backend", lambda config: WriterBackend())
    monkeypatch.setattr(gravity.evaluate.runner, "make_backend", lambda config: WriterBackend())


def test_gravity_run_on_a_user_task_from_an_events_folder(tmp_path: Path, generic, fake_models):
    """Readers and items from one events folder, for a user's task: the catalog is the task's,
    the prompts speak the task, held-out items are in no inferred profile."""
    from gravity.config import RunConfig
    from gravity.run import run_pipeline

    events = tmp_path / "events"
    shutil.copytree(generic, events)
    folder = _task(tmp_path, {"tags": ["poetry"], "fields": FIELDS}, {"person": "member"})
    infer = {"text_inference": False, "tag_items": False, "default_country": "PT"}
    cfg = RunConfig.model_validate(
        {
            "out_dir": str(tmp_path / "run"),
            "task": str(folder),
            "catalog": str(events),
            "profiles": {
                "n_per_country": 0,
                "events": str(events),
                "infer": {**infer, "split": "train", "heldout_share": 0.5},
            },
            "heldout": {
                "n_per_country": 0,
                "events": str(events),
                "infer": {**infer, "split": "heldout", "heldout_share": 0.5},
            },
            "heldout_items": 4,
            "modes": ["gravity"],
            "train_systems": [],
            "generate": {
                "facets": ["interests"],
                "max_items": 1,
                "filters": {"min_words": 5, "near_duplicate_threshold": None},
            },
            "evaluate": {"items_per_reader": 1, "bootstrap": 100, "min_readers": 1},
        }
    )
    metrics = run_pipeline(cfg, progress=False)
    out = cfg.out_dir
    task = load_task(folder)
    held = [json.loads(x) for x in (out / "books-heldout.jsonl").read_text().splitlines()]
    assert len(held) == 4 and set(held[0]) == set(task.spec.item.fields)
    pairs = [
        json.loads(x) for x in (out / "pairs-gravity" / "pairs.jsonl").read_text().split("\n") if x
    ]
    assert pairs and {p["task"] for p in pairs} == {"club-blurb"}
    prompt = pairs[0]["prompt"][-1]["content"]
    assert "Member: " in prompt and "The pick:" in prompt
    assert metrics["task"]["name"] == "club-blurb"
    # held titles are cut at 12 characters and favourites read "Title by Author": a favourite
    # that begins with a held title is a held-out item in a training profile
    titles = {h["title"] for h in held}
    favourites = [
        f
        for line in (out / "profiles.jsonl").read_text().splitlines()
        for f in json.loads(line)["interests"]["favourite_books"]
    ]
    assert favourites  # the check below has something to look at
    assert not [f for f in favourites if any(f.startswith(t) for t in titles)]


def test_a_held_out_item_is_set_aside_by_its_events_title_not_its_cut_one(tmp_path, generic):
    """Another edition of a held-out item ("Pride and Prejudice (Penguin Classics)") is set
    aside although the task cuts titles at 12 characters ("Pride and Pr")."""
    import dataclasses

    import pyarrow as pa

    from gravity.events.books import items_from_events, without_books

    task = load_task(_task(tmp_path, {"tags": ["poetry"], "fields": FIELDS}))
    data = read_events_dir(generic)
    pride = next(i for i in items_from_events(data, task) if i.id == "0141439513")
    rows = data.items.to_pylist()
    original = next(r for r in rows if r["id"] == "0141439513")
    edition = {
        **original,
        "id": "other-edition",
        "title": original["title"] + " (Penguin Classics)",
    }
    events = data.events.to_pylist()
    extra = {**next(e for e in events if e["item_id"] == "0141439513"), "item_id": "other-edition"}
    data = dataclasses.replace(
        data,
        items=pa.Table.from_pylist([*rows, edition], schema=data.items.schema),
        events=pa.Table.from_pylist([*events, extra], schema=data.events.schema),
    )
    kept, dropped = without_books(data, [pride], task)
    on_pride = sum(e["item_id"] in ("0141439513", "other-edition") for e in [*events, extra])
    assert dropped == on_pride
    assert "other-edition" not in kept.events.column("item_id").to_pylist()


def test_a_list_field_from_the_title_column_sets_aside_held_items(tmp_path, generic):
    """A task may fill a list field from the author or title column; the held-out check reads
    its first entry (it used to crash on the tuple)."""
    from gravity.events.books import items_from_events, without_books

    fields = {"title": "title", "topics": "author"}
    task = load_task(_task(tmp_path, {"tags": ["poetry"], "fields": fields}))
    data = read_events_dir(generic)
    items = items_from_events(data, task)
    kept, dropped = without_books(data, items[:2], task)
    assert dropped > 0 and kept.events.num_rows == data.events.num_rows - dropped


def test_sampled_readers_of_a_product_run_like_product_categories() -> None:
    """Where the run's sampler genres are not set, a task's tags are what sampled readers (and
    contrasting readers) like; the book task's tags are the sampler's genres, so book readers
    are unchanged; genres a config sets are kept."""
    from gravity.config import ProfilesStage
    from gravity.profiles.sampler import SamplerConfig
    from gravity.run import build_profiles, sampler_config

    def stage(task: str, **sampler) -> ProfilesStage:
        return ProfilesStage.model_validate(
            {
                "countries": ["BR"],
                "n_per_country": 3,
                "seed": 0,
                "infer": {"task": task},
                "sampler": sampler,
            }
        )

    product = load_task("product-description").spec.events.tags
    readers = build_profiles(stage("product-description"))
    liked = {g for r in readers for g in r.interests.genres + r.interests.dislikes}
    assert liked and liked <= set(product)
    assert sampler_config(stage("book-description")).genres == SamplerConfig().genres
    book = build_profiles(stage("book-description"))
    assert book == build_profiles(
        ProfilesStage.model_validate({"countries": ["BR"], "n_per_country": 3, "seed": 0})
    )
    assert sampler_config(stage("product-description", genres=["a", "b", "c"])).genres == [
        "a",
        "b",
        "c",
    ]
