"""``gravity tasks check``: a task folder is refused before any model call, with one line
naming the file and the field, when its spec is invalid, a template is missing, a template
uses a variable or item field the task does not provide (strict undefined, sandboxed), or its
catalog has a bad row. ``describe_task`` is what ``gravity tasks show`` prints; ``tasks_app``
is the ``gravity tasks`` command group."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError

from gravity.errors import GravityError
from gravity.taskspec import ROLE_VARIABLES, SPEC_FILE, Task, builtin_tasks, load_task

_SAMPLE = {"str": "text", "int": 1, "float": 1.0, "bool": True}


def sample_item(task: Task, empty_optional: bool = False) -> Any:
    """An item with a placeholder in every field (optional ones None when ``empty_optional``),
    built without validation: what templates are checked against."""
    values: dict[str, Any] = {}
    for name, spec in task.spec.item.fields.items():
        key = "id" if name == task.spec.item.id_field else name
        if empty_optional and not spec.required and key != "id":
            values[key] = () if spec.type == "list" else None
        else:
            values[key] = ("a", "b") if spec.type == "list" else _SAMPLE[spec.type]
    return task.spec.item.model().model_construct(**values)


def _role_samples(role: str) -> list[dict[str, Any]]:
    """Values of a role's variables that take each branch a template may have."""
    base: dict[str, Any] = {
        "profile_text": "Reader: a reader.",
        "language": "Portuguese",
        "facet": "values",
        "facet_text": "Values: cares most about tradition.",
        "guidance": "what the reader's values make them care about",
        "scenario": "The reader is choosing a gift.",
        "min_words": 10,
        "max_words": 90,
        "a": "first",
        "b": "second",
        "first": "first",
        "second": "second",
        "answer": "letter",
        "candidates": [{"label": "A", "text": "one"}, {"label": "B", "text": "two"}],
        "text": "one",
        "reader": "r1",
        "cases": [
            {
                "case_id": "c1",
                "item_title": "t",
                "candidates": [{"label": "A", "text": "one"}],
            }
        ],
        "rows": [],
        "columns": ["case_id"],
    }
    first = {k: base[k] for k in ROLE_VARIABLES[role]}
    other = dict(first)
    for key, value in (("answer", "json"), ("profile_text", ""), ("language", None)):
        if key in other:
            other[key] = value
    if "scenario" in other:
        other["scenario"] = None
    return [first, other]


def check_templates(task: Task) -> None:
    """Render every role's template with sample values; the first failure is one line."""
    for role in ROLE_VARIABLES:
        path = task.sources[role][0]
        for item in (sample_item(task), sample_item(task, empty_optional=True)):
            for variables in _role_samples(role):
                try:
                    task.render(role, item, **variables)
                except UndefinedError as exc:
                    raise GravityError(
                        f"{path}: templates.{role}: uses something the task does not provide "
                        f"({exc.message}); item fields: {', '.join(task.spec.item.shown())}; "
                        f"variables: item, {task.noun}, task, "
                        f"{', '.join(ROLE_VARIABLES[role]) or '(none)'}"
                    ) from None
                except SecurityError as exc:
                    raise GravityError(
                        f"{path}: templates.{role}: unsafe in the sandbox: {exc}"
                    ) from None
                except (TemplateError, TypeError, ValueError) as exc:
                    raise GravityError(f"{path}: templates.{role}: {exc}") from None


def check_task(ref: str) -> tuple[Task, int]:
    """Load the task ``ref`` (which renders its templates) and read its catalog; returns the
    task and its catalog's item count (0: no catalog of its own). Raises a one-line
    ``GravityError``."""
    task = load_task(ref)
    n = len(task.load_catalog()) if task.catalog_path() is not None else 0
    return task, n


def describe_task(task: Task) -> str:
    """What ``gravity tasks show`` prints: the spec's essentials and its templates."""
    spec = task.spec
    lines = [
        f"task: {spec.name} (version {spec.version}, digest {task.digest})",
        f"folder: {task.folder}",
        f"about: {spec.description}" if spec.description else "",
        f"item: {spec.item.noun} (id field: {spec.item.id_field})",
    ]
    for name, field in spec.item.fields.items():
        flags = [field.type] + [
            word for word, on in (("required", field.required), ("hidden", not field.shown)) if on
        ]
        lines.append(f"  - {name}: {', '.join(flags)}")
    lines.append(f"output: {spec.output.name}, about {spec.output.words} words")
    lines.append(f"output language: {spec.output_language}")
    lines.append(f"catalog: {task.catalog_path() or '(none: give one)'}")
    lines += _events_lines(task)
    lines.append("templates:")
    lines += [f"  - {role}: {task.sources[role][0]}" for role in ROLE_VARIABLES]
    return "\n".join(line for line in lines if line)


def _events_lines(task: Task) -> list[str]:
    """What ``gravity tasks show`` says of the events side: the tags, the profile wording and
    whether an events folder can give the task a catalog."""
    events = task.spec.events
    tags = (
        f"{len(events.tags)} {events.tag_name} ({', '.join(events.tags[:4])}, ...)"
        if events.tags
        else "none (profiles infer needs --no-tag-items)"
    )
    try:
        fields = task.events_fields()
        catalog = ", ".join(f"{n} <- {c}" for n, c in fields.items()) or "ids only"
        catalog += f" (at most {task.spec.max_catalog_items} {task.spec.item.plural})"
    except GravityError as exc:
        catalog = "no: " + str(exc).split("events.fields: ", 1)[-1]
    return [
        f"person: {task.profile_wording().person}",
        f"events tags: {tags}",
        f"catalog from an events folder: {catalog}",
    ]


# --- gravity tasks list | show | check ----------------------------------------------------------

tasks_app = typer.Typer(
    help="Personalization tasks: list, show, check a task folder.", no_args_is_help=True
)


@tasks_app.command("list")
def tasks_list() -> None:
    """The built-in tasks, one a line: name, version, what it writes."""
    for name in builtin_tasks():
        task = load_task(name)
        typer.echo(f"{name}\tv{task.spec.version}\t{task.spec.description}")


@tasks_app.command("show")
def tasks_show(
    task: Annotated[str, typer.Argument(help="A built-in task's name or a task folder.")],
) -> None:
    """The task's item schema, output, catalog and templates."""
    typer.echo(describe_task(load_task(task)))


@tasks_app.command("check")
def tasks_check(
    task: Annotated[str, typer.Argument(help="A task folder (or a built-in task's name).")],
) -> None:
    """Check a task before any model call: its task.yaml, every template (rendered strictly
    with sample values) and its catalog. Exit 2 with one line naming the file and field."""
    spec, n = check_task(task)
    items = f"{n} {spec.spec.item.plural} in its catalog" if n else "no catalog of its own"
    typer.echo(f"ok: task '{spec.name}' v{spec.spec.version} (digest {spec.digest}), {items}")


__all__ = ["SPEC_FILE", "check_task", "describe_task", "sample_item", "tasks_app"]
