"""Tasks as data (issue 22): the built-in tasks, a user's task folder, hostile specs refused
with one line naming the file and the field before any model call, and `gravity run` end to
end on each task (fake writer and judge, tiny trained model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gravity.cli import app
from gravity.errors import GravityError
from gravity.profiles.render import render_profile
from gravity.taskcheck import check_task
from gravity.taskspec import ROLE_VARIABLES, builtin_tasks, load_task

BUILTIN = ["book-description", "product-description", "travel-pitch"]


def test_three_builtin_tasks_each_with_a_catalog_of_40_or_more() -> None:
    assert builtin_tasks() == BUILTIN
    for name in BUILTIN:
        task, n = check_task(name)
        assert task.name == name and n >= 40
        assert len(task.digest) == 16
    result = CliRunner().invoke(app, ["tasks", "list"])
    assert result.exit_code == 0
    assert [line.split("\t")[0] for line in result.output.splitlines()] == BUILTIN


def test_tasks_show_names_schema_output_and_templates() -> None:
    result = CliRunner().invoke(app, ["tasks", "show", "product-description"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "item: product (id field: id)" in out and "supplier_code: str, hidden" in out
    assert "output: description, about 60 words" in out and "output language: reader" in out
    assert "deployed: " in out and out.count("\n  - ") >= 10
    assert "person: shopper" in out and "events tags: 15 categories (home and kitchen," in out
    assert "catalog from an events folder: no: the required item field 'price_band'" in out


def test_every_task_renders_every_role_with_every_example_profile(example_profiles) -> None:
    for name in BUILTIN:
        task = load_task(name)
        items = task.load_catalog()
        for profile in example_profiles:
            profile_text = render_profile(profile)
            for item in items[:3]:
                user = task.render(
                    "deployed", item, profile_text=profile_text, language=task.language(profile)
                )
                assert profile_text in user
                title = getattr(item, task.spec.item.title_field)
                judged = task.render(
                    "judge_pair",
                    item,
                    profile_text=profile_text,
                    first="x",
                    second="y",
                    answer="json",
                )
                assert title in judged
                if task.template_name("judge_pair").startswith("task/"):  # the generic one
                    assert task.view()["judge_question"] in judged
    assert set(ROLE_VARIABLES) == set(load_task().spec.templates.model_fields)


def test_hidden_fields_never_reach_a_prompt_and_reader_language_is_asked(example_profiles) -> None:
    task = load_task("product-description")
    item = task.load_catalog()[0]
    assert item.supplier_code == "SUP-001"  # kept in the catalog
    brazil = next(p for p in example_profiles if p.country == "BR")
    from gravity.task import deployed_messages

    text = json.dumps(deployed_messages(brazil, item, task))
    assert "SUP-001" not in text and "Write it in Portuguese (pt-BR)." in text
    assert "Write it in" not in json.dumps(deployed_messages(None, item, task))
    # The book task asks for no language: its prompts are the paper's.
    book = load_task().load_catalog()[0]
    assert "Write it in" not in json.dumps(deployed_messages(brazil, book))


def test_item_text_stays_literal(tmp_path: Path) -> None:
    folder = _user_task(tmp_path)
    rows = [json.loads(x) for x in (folder / "catalog.jsonl").read_text().splitlines()]
    rows[0]["name"] = "{{ 7*7 }} {% raw %}"
    (folder / "catalog.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = load_task(folder)
    item = task.load_catalog()[0]
    assert "{{ 7*7 }} {% raw %}" in task.render("deployed", item, profile_text="", language=None)


# --- a user's task folder -------------------------------------------------------------------


def _user_task(root: Path) -> Path:
    """A small e-mail task written as a user would: task.yaml, one template, a catalog."""
    folder = root / "newsletter"
    folder.mkdir()
    spec = {
        "name": "newsletter-intro",
        "version": "0.1",
        "description": "The opening paragraph of a club newsletter, for one member.",
        "item": {
            "noun": "event",
            "plural": "events",
            "title_field": "name",
            "fields": {
                "id": {"type": "str", "required": True},
                "name": {"type": "str", "required": True},
                "date": {"type": "str", "required": True},
                "seats": {"type": "int"},
                "summary": {"type": "str", "required": True, "min_length": 10},
            },
        },
        "catalog": "catalog.jsonl",
        "output": {"name": "intro", "words": 50},
        "facets": {"values": "what the member's values make them want from a club evening"},
        "templates": {"deployed": "deployed.j2"},
    }
    (folder / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (folder / "deployed.j2").write_text(
        "{#- Variables: event, profile_text, language -#}\n"
        "{% if profile_text %}Member:\n{{ profile_text }}\n\n{% endif %}"
        "Event: {{ event.name }} on {{ event.date }}"
        "{% if event.seats is not none %} ({{ event.seats }} seats){% endif %}.\n"
        "{{ event.summary }}\n\nWrite an intro of about {{ task.words }} words.\n"
    )
    rows = [
        {
            "id": f"ev-{k}",
            "name": f"Evening {k}",
            "date": f"2027-0{1 + k % 9}-1{k % 10}",
            "seats": 20 + k,
            "summary": f"A club evening number {k} with talks, tea and a walk by the river.",
        }
        for k in range(24)
    ]
    (folder / "catalog.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_user_task_folder_checks_and_prompts(tmp_path: Path, example_files) -> None:
    folder = _user_task(tmp_path)
    result = CliRunner().invoke(app, ["tasks", "check", str(folder)])
    assert result.exit_code == 0, result.output
    assert (
        result.output.startswith("ok: task 'newsletter-intro' v0.1")
        and "24 events" in result.output
    )
    result = CliRunner().invoke(
        app,
        ["prompt", "--task", str(folder), "--item", "ev-3", "--profile", str(example_files[0])],
    )
    assert result.exit_code == 0, result.output
    assert "Event: Evening 3 on 2027-04-13 (23 seats)." in result.output
    assert (
        "Member:" in result.output and "You write short, engaging intros of events" in result.output
    )


# --- hostile specs ----------------------------------------------------------------------------


def _edit_spec(folder: Path, change) -> None:
    spec = yaml.safe_load((folder / "task.yaml").read_text())
    change(spec)
    (folder / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def _set(path: list[str], value):
    def change(spec):
        node = spec
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    return change


def _template(text: str):
    def change(folder: Path) -> None:
        (folder / "deployed.j2").write_text(text)

    return change


def _catalog_row(row: dict):
    def change(folder: Path) -> None:
        with (folder / "catalog.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")

    return change


HOSTILE = {
    "missing template": (
        lambda f: _edit_spec(f, _set(["templates", "deployed"], "nope.j2")),
        ["task.yaml: templates.deployed: template 'nope.j2' not found"],
    ),
    "undefined variable": (
        _template("{{ reader_mood }} {{ event.name }}"),
        ["deployed.j2: templates.deployed: uses something", "'reader_mood' is undefined"],
    ),
    "unknown item field": (
        _template("{{ event.colour }}"),
        ["deployed.j2: templates.deployed: uses something", "colour"],
    ),
    "hidden item field": (
        lambda f: (
            _edit_spec(f, _set(["item", "fields", "seats", "shown"], False)),
            _template("{{ event.seats }}")(f),
        ),
        ["deployed.j2: templates.deployed: uses something", "seats"],
    ),
    "bad field type": (
        lambda f: _edit_spec(f, _set(["item", "fields", "date", "type"], "date")),
        ["task.yaml:", "item.fields.date.type:", "'str', 'int', 'float', 'list' or 'bool'"],
    ),
    "bad output length": (
        lambda f: _edit_spec(f, _set(["output", "words"], "many")),
        ["task.yaml:", "output.words:"],
    ),
    "unknown spec field": (
        lambda f: _edit_spec(f, _set(["judge_prompt"], "x")),
        ["task.yaml:", "judge_prompt: unknown field"],
    ),
    "id field not a field": (
        lambda f: _edit_spec(f, _set(["item", "id_field"], "sku")),
        ["task.yaml:", "item: ", "id_field 'sku' is not one of the fields"],
    ),
    "catalog row missing a required field": (
        _catalog_row({"id": "ev-x", "name": "Late", "summary": "A late evening of quiet talk."}),
        ["catalog.jsonl:25: date: Field required"],
    ),
    "catalog row with a bad type": (
        _catalog_row(
            {"id": "ev-y", "name": "N", "date": "d", "seats": "many", "summary": "Ten words or so."}
        ),
        ["catalog.jsonl:25: seats:", "integer"],
    ),
    "template syntax error": (
        _template("{% if %}"),
        ["deployed.j2:1: template syntax error"],
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_task_spec_is_one_line_naming_file_and_field(tmp_path: Path, case: str) -> None:
    folder = _user_task(tmp_path)
    change, expected = HOSTILE[case]
    change(folder)
    result = CliRunner().invoke(app, ["tasks", "check", str(folder)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    for part in expected:
        assert part in lines[0], (case, lines[0])


def test_hostile_task_fails_generate_before_any_model_call(tmp_path: Path, example_files) -> None:
    folder = _user_task(tmp_path)
    _template("{{ event.colour }}")(folder)
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--profiles",
            str(example_files[0]),
            "--out",
            str(tmp_path / "pairs"),
            "--task",
            str(folder),
            "--backend.model",
            "no-such-model-would-fail-later",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "deployed.j2: templates.deployed:" in result.output
    assert not (tmp_path / "pairs").exists()


def test_unknown_task_name_lists_the_builtin_ones() -> None:
    with pytest.raises(GravityError, match="no task 'poems'; built-in: book-description, "):
        load_task("poems")


def test_one_task_per_run() -> None:
    from gravity.config import RunConfig

    cfg = RunConfig.model_validate({"task": "travel-pitch"})
    assert cfg.generate.task == cfg.evaluate.task == "travel-pitch"
    cfg = RunConfig.model_validate({"generate": {"task": "travel-pitch"}})
    assert cfg.evaluate.task == "travel-pitch"
    with pytest.raises(ValueError, match="one task per run: task 'travel-pitch', generate.task"):
        RunConfig.model_validate({"task": "travel-pitch", "generate": {"task": "x"}})


# --- gravity run, end to end, on every task -----------------------------------------------------


@pytest.fixture
def fake_models(monkeypatch):
    """The fake writer and judge behind every synthesis, system and judge call; training is
    real (a tiny model)."""
    import gravity.evaluate.runner
    import gravity.synth
    from tests.fakes import WriterBackend

    monkeypatch.setattr(gravity.synth, "make_backend", lambda config: WriterBackend())
    monkeypatch.setattr(gravity.evaluate.runner, "make_backend", lambda config: WriterBackend())


def _run_config(tmp_path: Path, tiny_model: Path, task: str, heldout_items: int) -> Path:
    config = {
        "out_dir": str(tmp_path / "run"),
        "task": task,
        "profiles": {"countries": ["US", "BR"], "n_per_country": 1, "seed": 0},
        "heldout": {"countries": ["US", "JP"], "n_per_country": 1, "seed": 1},
        "heldout_items": heldout_items,
        "modes": ["gravity", "naive"],
        "train_systems": ["gravity"],
        "generate": {
            "facets": ["values"],
            "max_items": 1,
            "filters": {"min_words": 5, "near_duplicate_threshold": None},
        },
        "train": {"model": str(tiny_model), "max_steps": 1, "max_length": 1024},
        "evaluate": {"items_per_reader": 1, "bootstrap": 200, "min_readers": 1},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("task", ["product-description", "travel-pitch", "USER"])
def test_gravity_run_end_to_end_on_a_task(tmp_path, tiny_model, fake_models, task) -> None:
    from gravity.config import RunConfig, load_yaml_model
    from gravity.run import run_pipeline

    if task == "USER":
        task = str(_user_task(tmp_path))
    loaded = load_task(task)
    cfg = load_yaml_model(_run_config(tmp_path, tiny_model, task, 8), RunConfig)
    metrics = run_pipeline(cfg, progress=False)
    out = cfg.out_dir
    pairs = [
        json.loads(x) for x in (out / "pairs-gravity" / "pairs.jsonl").read_text().splitlines()
    ]
    assert pairs and {p["task"] for p in pairs} == {loaded.name}
    assert {p["task_digest"] for p in pairs} == {loaded.digest}
    catalog = {i.id for i in loaded.load_catalog()}
    assert {p["item_id"] for p in pairs} <= catalog
    assert metrics["task"]["name"] == loaded.name and metrics["systems"] == [
        "base",
        "prompt",
        "gravity",
    ]
    report = (out / "eval" / "report.md").read_text()
    assert f"Task: `{loaded.name}` (digest {loaded.digest})." in report
    assert f"reader-{loaded.noun} cases" in report
    card = (out / "data-gravity" / "README.md").read_text()
    assert f"for the task `{loaded.name}` (task digest {loaded.digest})" in card
    model_card = (out / "models" / "gravity" / "README.md").read_text()
    assert f"- task: `{loaded.name}` (digest {loaded.digest})" in model_card
    cases = [json.loads(x) for x in (out / "eval" / "cases.jsonl").read_text().splitlines()]
    assert {c["task"] for c in cases} == {loaded.ref}


def test_human_form_speaks_the_task(tmp_path) -> None:
    from gravity.evaluate.human import export_sheets

    task = load_task("travel-pitch")
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    case = {
        "case_id": "r1:kyoto-temples",
        "reader_id": "r1",
        "country": "JP",
        "item_id": "kyoto-temples",
        "item_title": "Temples of Kyoto",
        "task": task.ref,
        "descriptions": {"base": "One <b>pitch</b>.", "gravity": "Another pitch."},
    }
    (eval_dir / "cases.jsonl").write_text(json.dumps(case) + "\n")
    export_sheets(eval_dir, tmp_path / "sheets")
    page = (tmp_path / "sheets" / "reader-r1.html").read_text()
    assert "<h1>Which pitch makes you want to go to this destination?</h1>" in page
    assert "One &lt;b&gt;pitch&lt;/b&gt;." in page  # texts are data, escaped
    shutil.rmtree(tmp_path / "sheets")


# --- renamed names (book -> item) -------------------------------------------------------------


@pytest.mark.parametrize(
    "section, old, new",
    [
        ("generate", "max_books", "max_items"),
        ("generate", "book_selection", "item_selection"),
        ("generate", "books", "catalog"),
        ("evaluate", "books_per_reader", "items_per_reader"),
        ("evaluate", "books", "catalog"),
        (None, "heldout_books", "heldout_items"),
        (None, "books", "catalog"),
    ],
)
def test_old_config_field_is_one_line_naming_the_new_one(tmp_path, section, old, new) -> None:
    from gravity.config import RunConfig, load_yaml_model

    data = {old: 2} if section is None else {section: {old: 2}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(GravityError) as err:
        load_yaml_model(path, RunConfig)
    lines = str(err.value).splitlines()
    assert len(lines) == 1 and str(path) in lines[0]
    assert f"'{old}' was renamed '{new}'" in lines[0]


@pytest.mark.parametrize(
    "args, old, new",
    [
        (
            ["generate", "--profiles", "p", "--out", "o", "--max-books", "2"],
            "--max-books",
            "--max-items",
        ),
        (
            ["generate", "--profiles", "p", "--out", "o", "--book-selection", "random"],
            "--book-selection",
            "--item-selection",
        ),
        (
            ["evaluate", "--profiles", "p", "--out", "o", "--books-per-reader", "1"],
            "--books-per-reader",
            "--items-per-reader",
        ),
        (
            ["run", "x.yaml", "--generate.max-books", "1"],
            "--generate.max-books",
            "--generate.max-items",
        ),
        (["run", "x.yaml", "--heldout-books", "1"], "--heldout-books", "--heldout-items"),
        (["prompt", "--book", "emma"], "--book", "--item"),
        (["prompt", "--item", "emma", "--books", "c.csv"], "--books", "--catalog"),
    ],
)
def test_old_flag_is_one_line_naming_the_new_one(args, old, new) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {old}: renamed {new}"


# --- the per-task configs -----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("task", ["product-description", "travel-pitch"])
def test_task_config_plans_with_the_task_and_loads_no_model(tmp_path, no_models, task) -> None:
    from gravity.config import RunConfig, load_yaml_model
    from gravity.plan import build_plan

    cfg = load_yaml_model(ROOT / "configs" / f"{task}.yaml", RunConfig)
    assert cfg.generate.task == cfg.evaluate.task == task
    plan = build_plan(cfg.model_copy(update={"out_dir": tmp_path / "run"}))
    n = len(load_task(task).load_catalog())
    assert plan.books == {"training": n - 12, "heldout": 12}
    assert plan.modes == {"gravity": {"slots": 8, "pairs": 8}, "naive": {"slots": 8, "pairs": 8}}
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["product-description", "travel-pitch"])
def test_gravity_run_on_a_task_with_the_embedded_model(tmp_path, tiny_model, task) -> None:
    """`gravity run` through the CLI on the embedded model (synthesis, systems, judge), three
    systems trained on a tiny model: every stage reads the task."""
    import subprocess
    import sys

    from tests.fakes import child_env

    config = {
        "out_dir": str(tmp_path / "run"),
        "task": task,
        "profiles": {"countries": ["US", "BR"], "n_per_country": 1, "seed": 0},
        "heldout": {"countries": ["US", "BR"], "n_per_country": 1, "seed": 1},
        "heldout_items": 10,
        "generate": {
            "facets": ["values"],
            "max_items": 1,
            "description_tokens": 96,
            "scenario_tokens": 48,
            "filters": {"min_words": 5},
        },
        "train": {"model": str(tiny_model), "max_steps": 1, "max_length": 1024},
        "evaluate": {
            "items_per_reader": 1,
            "max_new_tokens": 32,
            "bootstrap": 200,
            "min_readers": 2,
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "gravity", "run", str(path)],
        capture_output=True,
        text=True,
        env=child_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "run"
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["task"]["name"] == task and metrics["cases"] == 2
    assert f"Task: `{task}`" in (out / "eval" / "report.md").read_text()
    summary = json.loads((out / "pairs-gravity" / "summary.json").read_text())
    assert summary["rows_in"] == summary["written"] + summary["rejected"] == 2


def _tiny_embedded_config(tmp_path: Path, tiny_model: Path, task: str) -> dict:
    """The smallest run that still takes every stage: two readers on each side, one item and
    one facet each, short texts, one system trained for one step on the tiny model."""
    return {
        "out_dir": str(tmp_path / "run"),
        "task": task,
        "profiles": {"countries": ["US", "BR"], "n_per_country": 1, "seed": 0},
        "heldout": {"countries": ["US", "BR"], "n_per_country": 1, "seed": 1},
        "heldout_items": 4,
        "modes": ["gravity"],
        "train_systems": ["gravity"],
        "generate": {
            "facets": ["values"],
            "max_items": 1,
            "description_tokens": 64,
            "scenario_tokens": 48,
            "filters": {"min_words": 3, "near_duplicate_threshold": None},
        },
        "train": {"model": str(tiny_model), "max_steps": 1, "max_length": 1024},
        "evaluate": {
            "items_per_reader": 1,
            "max_new_tokens": 16,
            "protocol": "ranking",
            "bootstrap": 100,
            "min_readers": 2,
        },
    }


@pytest.mark.parametrize("task", [*BUILTIN, "USER"])
def test_tiny_gravity_run_on_each_task_with_the_embedded_model(tmp_path, tiny_model, task):
    """`gravity run` in process on the embedded model (synthesis, the base and prompt systems,
    the judge) plus one system trained on the tiny model: every stage reads the task. About 40 s
    of CPU per task (measured as process CPU time on the shared 2-core machine); the fuller run
    (three trained systems, pairwise judging, through the CLI) is the slow test below."""
    from gravity.config import RunConfig
    from gravity.run import run_pipeline

    if task == "USER":
        task = str(_user_task(tmp_path))
    loaded = load_task(task)
    cfg = RunConfig.model_validate(_tiny_embedded_config(tmp_path, tiny_model, task))
    metrics = run_pipeline(cfg, progress=False)
    out = cfg.out_dir
    pairs = [
        json.loads(x) for x in (out / "pairs-gravity" / "pairs.jsonl").read_text().splitlines()
    ]
    assert pairs and {p["task"] for p in pairs} == {loaded.name}
    assert metrics["task"]["name"] == loaded.name and metrics["cases"] == 2
    assert metrics["systems"] == ["base", "prompt", "gravity"]
    assert f"Task: `{loaded.name}`" in (out / "eval" / "report.md").read_text()
