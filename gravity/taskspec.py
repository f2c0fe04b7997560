"""Tasks as data: what a personalized model writes, for which items, judged how.

A task is a folder holding ``task.yaml`` (validated by ``TaskSpec``), its Jinja templates and,
optionally, its catalog. Synthesis, evaluation, ``gravity prompt``, the human form and the
dry-run plan read the task; no stage branches on a task's name. Built-in tasks live in the
shipped ``tasks/`` folder (``book-description``, the paper's, is the default).

A template named in ``templates`` is looked up in the task's folder first, then among the
shipped templates (``prompts/``), so a task may reuse the generic ones in ``prompts/task/``.
Templates see the item as ``item`` and under the task's noun (``book``), the task's wording as
``task``, and each role's own variables (listed in ``ROLE_VARIABLES``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gravity.errors import GravityError
from gravity.items import ItemSchema, ItemView, load_items
from gravity.profiles.render import ProfileWording
from gravity.resources import prompts_dir, tasks_dir

DEFAULT_TASK = "book-description"
SPEC_FILE = "task.yaml"
ProfileFacet = Literal["interests", "values", "personality", "culture", "intents"]


class OutputSpec(BaseModel):
    """What the deployed model writes."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        default="description",
        min_length=1,
        max_length=40,
        description="What one output is called ('description', 'pitch', 'brief').",
    )
    words: int = Field(default=80, ge=5, le=2000, description="Length asked for, in words.")


class Wording(BaseModel):
    """The judge's, the interestingness rating's and the human form's questions."""

    model_config = ConfigDict(extra="forbid")

    judge_question: str = Field(
        default="Which {output} makes you, this reader, most want to pick this {noun}?",
        description="What the persona judge is asked ({output} and {noun} are filled in).",
    )
    interest_question: str = Field(
        default="How interesting is this {output} to you, this reader, on a scale from 1 "
        "(dull) to 5 (fascinating)?",
        description="The 1-5 interestingness question.",
    )
    quality_question: str = Field(
        default="Which {output} is better written and more informative?",
        description="The naive baseline's generic quality question (no reader).",
    )
    human_title: str = Field(
        default="Which {output} makes you want to pick this {noun}?",
        description="The human form's heading.",
    )

    def filled(self, output: str, noun: str) -> dict[str, str]:
        """Each question with ``{output}`` and ``{noun}`` filled in."""
        return {
            k: v.replace("{output}", output).replace("{noun}", noun)
            for k, v in self.model_dump().items()
        }


EVENTS_COLUMNS = ("title", "author", "year", "publisher", "description", "categories", "isbn")
"""The columns of an events folder's items (``gravity events import``) a task's fields may come
from; ``id`` always comes from the item's id."""
_COLUMN_TYPES = {
    "year": ("int", "float", "str"),
    "categories": ("list", "str"),
    **{c: ("str", "list") for c in ("title", "author", "publisher", "description", "isbn")},
}
"""The item field types each events column can fill (a list column fills a str field with its
first entry; a text column fills a list field as one entry)."""


class EventsSpec(BaseModel):
    """How an events folder (``gravity events import``) serves the task: the vocabulary
    uncategorised items are tagged from, the wording of the tagging and trait-inference prompts,
    and which events column each item field of a catalog built from the folder comes from."""

    model_config = ConfigDict(extra="forbid")

    tags: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=60,
        description="The vocabulary (book genres, product categories, kinds of trip) an LLM "
        "tags items without categories from; needed where profiles are inferred with tagging "
        "on (else: --no-tag-items).",
    )
    tag_name: str = Field(
        default="categories",
        pattern=r"^[a-z][a-z_]{0,29}$",
        description="What a tag is called in the tagging prompt and its JSON answer "
        "('genres', 'categories', 'kinds').",
    )
    analyst: str = Field(
        default="analyst",
        min_length=1,
        max_length=60,
        description="Who the tagging and trait-inference prompts' system message says the "
        "model is ('literary analyst').",
    )
    reviews: str = Field(
        default="reviews",
        min_length=1,
        max_length=60,
        description="What the trait-inference prompt calls the user's texts ('book reviews').",
    )
    fields: dict[str, Literal[EVENTS_COLUMNS]] | None = Field(  # type: ignore[valid-type]
        default=None,
        description="Item field -> the events column it comes from, for a catalog built from "
        "an events folder; default: each field named like a column comes from it.",
    )

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        for tag in value:
            if not tag.strip() or len(tag) > 60:
                raise ValueError(f"tag '{tag}' must have 1 to 60 characters")
            if tag != tag.strip() or any(c in tag for c in "\n\r\t"):
                raise ValueError(f"tag {tag!r} has leading, trailing or control whitespace")
        folded = [" ".join(t.casefold().split()) for t in value]
        if len(set(folded)) != len(folded):
            raise ValueError("tags must be unique (ignoring case and spaces)")
        return value

    @field_validator("tag_name")
    @classmethod
    def _tag_name(cls, value: str) -> str:
        # the tagging answer is a pydantic model with this field beside ``themes``: a name that
        # is ``themes`` or a BaseModel attribute would replace the vocabulary-checked field
        if value == "themes" or value.startswith("model_") or hasattr(BaseModel, value):
            raise ValueError(f"'{value}' is reserved (themes, model_*, pydantic names)")
        return value

    @field_validator("analyst", "reviews")
    @classmethod
    def _words(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class Templates(BaseModel):
    """The template of each role (a file of the task folder, or a shipped template)."""

    model_config = ConfigDict(extra="forbid")

    system: str = Field(default="task/system.j2", description="The deployed system message.")
    deployed: str = Field(
        default="task/deployed.j2", description="The deployed instruction (the user turn)."
    )
    scenario: str = Field(default="task/scenario.j2", description="Step 1: a reader's situation.")
    chosen: str = Field(default="task/chosen.j2", description="Step 2: the grounded output.")
    generic: str = Field(default="task/generic.j2", description="An output for no one.")
    judge_quality: str = Field(default="task/judge_quality.j2", description="Naive judge.")
    judge_pair: str = Field(default="task/judge_pair.j2", description="Persona judge, pairs.")
    judge_persona: str = Field(
        default="task/judge_persona.j2", description="Persona judge, ranking."
    )
    judge_interest: str = Field(
        default="task/judge_interest.j2", description="Interestingness, 1-5."
    )
    human_form: str = Field(
        default="task/human_form.html.j2", description="The human raters' HTML form."
    )


class TaskSpec(BaseModel):
    """``task.yaml``: one personalization task."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,59}$", description="The task's name.")
    version: str = Field(default="1", min_length=1, description="Bump when the task changes.")
    description: str = Field(default="", description="What the task is, in a sentence.")
    item: ItemSchema = Field(description="The item schema.")
    catalog: str | None = Field(
        default=None, description="The task's own catalog, a file in the task folder."
    )
    output: OutputSpec = Field(default_factory=OutputSpec)
    output_language: Literal["any", "reader"] = Field(
        default="any",
        description="reader: outputs are asked for in each reader's language (profile "
        "demographics.language), where the profile has one.",
    )
    facets: dict[ProfileFacet, str] = Field(
        default_factory=dict,
        description="Per-facet guidance for the scenario and chosen prompts: what that facet "
        "of a reader makes them care about in an output.",
    )
    wording: Wording = Field(default_factory=Wording)
    templates: Templates = Field(default_factory=Templates)
    max_catalog_items: int = Field(
        default=200, ge=1, description="Items a catalog built from an events folder keeps."
    )
    profile: ProfileWording = Field(
        default_factory=ProfileWording,
        description="How prompts name the person and their interests (profile fields keep "
        "their names; an empty label leaves a field out).",
    )
    events: EventsSpec = Field(default_factory=EventsSpec)

    @model_validator(mode="after")
    def _events_fields(self) -> TaskSpec:
        schema = self.item
        for name, column in (self.events.fields or {}).items():
            where = f"events.fields.{name}"
            if name == schema.id_field:
                raise ValueError(f"{where}: the id comes from the events item's id")
            if name not in schema.fields:
                raise ValueError(f"{where}: not a field of the item ({', '.join(schema.fields)})")
            kind = schema.fields[name].type
            if kind not in _COLUMN_TYPES[column]:
                raise ValueError(f"{where}: a {kind} field cannot come from the column '{column}'")
        return self

    def events_fields(self) -> dict[str, str]:
        """Item field -> the events column it comes from (``events.fields``, else each field
        named like a column of the right type)."""
        if self.events.fields is not None:
            return dict(self.events.fields)
        return {
            name: name
            for name, spec in self.item.fields.items()
            if name != self.item.id_field
            and name in _COLUMN_TYPES
            and spec.type in _COLUMN_TYPES[name]
        }


ROLE_VARIABLES: dict[str, tuple[str, ...]] = {
    "system": (),
    "deployed": ("profile_text", "language"),
    "scenario": ("facet", "facet_text", "guidance"),
    "chosen": (
        "facet",
        "facet_text",
        "scenario",
        "guidance",
        "min_words",
        "max_words",
        "language",
    ),
    "generic": ("min_words", "max_words", "language"),
    "judge_quality": ("a", "b", "answer"),
    "judge_pair": ("profile_text", "first", "second", "answer"),
    "judge_persona": ("profile_text", "candidates", "answer"),
    "judge_interest": ("profile_text", "text", "answer"),
    "human_form": ("reader", "profile_text", "cases", "rows", "columns"),
}
"""The variables each role's template gets besides ``item``/the noun and ``task``."""


class UnknownTaskError(GravityError):
    """A task reference that names no built-in task and no task folder."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"--task: {reason}")


@dataclass(frozen=True)
class Task:
    """A loaded task: its spec, its folder and its templates' sources."""

    spec: TaskSpec
    folder: Path
    builtin: bool
    sources: dict[str, tuple[Path, str]] = field(repr=False)  # role -> (file, source)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def noun(self) -> str:
        return self.spec.item.noun

    @property
    def ref(self) -> str:
        """How to name the task again: its name if built in, else its folder."""
        return self.name if self.builtin else str(self.folder)

    @property
    def digest(self) -> str:
        """sha256 (16 hex) of the spec and every template's source."""
        blob = json.dumps(
            {
                "spec": self.spec.model_dump(mode="json"),
                "templates": {
                    r: hashlib.sha256(s.encode()).hexdigest()
                    for r, (_, s) in sorted(self.sources.items())
                },
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def template_name(self, role: str) -> str:
        return getattr(self.spec.templates, role)

    def template_hashes(self, *roles: str) -> dict[str, str]:
        """Template name -> sha256 (16 hex) of its source, for record metadata."""
        return {
            self.template_name(r): hashlib.sha256(self.sources[r][1].encode()).hexdigest()[:16]
            for r in roles
        }

    def view(self) -> dict[str, Any]:
        """What templates see as ``task``."""
        spec = self.spec
        return {
            "name": spec.name,
            "noun": spec.item.noun,
            "plural": spec.item.plural,
            "output": spec.output.name,
            "words": spec.output.words,
            "facets": dict(spec.facets),
            **spec.wording.filled(spec.output.name, spec.item.noun),
        }

    def variables(self, item: Any | None) -> dict[str, Any]:
        """The variables every template of the task gets: the task and the item."""
        out: dict[str, Any] = {"task": self.view()}
        if item is not None:
            shown = ItemView(item, self.spec.item)
            out["item"] = shown
            out[self.noun] = shown
            out["item_title"] = getattr(item, self.spec.item.title_field)
            out["item_fields"] = self.spec.item.listed(item)
        return out

    def render(self, role: str, item: Any | None = None, **variables: Any) -> str:
        """Render the template of ``role`` (blank-line runs collapsed, as every prompt)."""
        from gravity.prompts import render_source

        path, source = self.sources[role]
        return render_source(source, str(path), **self.variables(item), **variables)

    def profile_text(self, profile: Any, facets: list[str] | None = None) -> str:
        """``profile`` rendered for prompts, named in the task's wording."""
        from gravity.profiles.render import render_profile

        return render_profile(profile, facets, self.profile_wording())

    def profile_wording(self) -> ProfileWording:
        return self.spec.profile.filled(self.spec.item.noun, self.spec.item.plural)

    def tags(self) -> list[str]:
        """The tag vocabulary of the events side; a one-line error naming the file and the
        field where the task gives none."""
        if not self.spec.events.tags:
            raise GravityError(
                f"{self.folder / SPEC_FILE}: events.tags: task '{self.name}' gives no tags to "
                "tag uncategorised items with: add the list, or turn tagging off "
                "(--no-tag-items, infer.tag_items: false)"
            )
        return list(self.spec.events.tags)

    def events_fields(self) -> dict[str, str]:
        """Item field -> events column for a catalog built from an events folder; a one-line
        error naming the file and the field where a required field has none."""
        mapping = self.spec.events_fields()
        schema = self.spec.item
        for name, spec in schema.fields.items():
            if spec.required and name != schema.id_field and name not in mapping:
                raise GravityError(
                    f"{self.folder / SPEC_FILE}: events.fields: the required item field "
                    f"'{name}' comes from no events column ({', '.join(EVENTS_COLUMNS)}): map "
                    "it, make it optional, or give a catalog file instead of an events folder"
                )
        return mapping

    def guidance(self, facet: str) -> str:
        """The task's guidance for ``facet`` ('' where it gives none)."""
        return self.spec.facets.get(facet, "")  # type: ignore[call-overload,no-any-return]

    def language(self, profile: Any | None) -> str | None:
        """The language outputs are asked for in for ``profile`` (None: not asked)."""
        if self.spec.output_language != "reader" or profile is None:
            return None
        return language_name(profile.demographics.language)

    def catalog_path(self) -> Path | None:
        return None if self.spec.catalog is None else self.folder / self.spec.catalog

    def load_catalog(self, path: str | Path | None = None) -> list[Any]:
        """Items of ``path`` (default: the task's own catalog) validated against the schema."""
        path = path if path is not None else self.catalog_path()
        if path is None:
            raise GravityError(
                f"task '{self.name}' has no catalog of its own: give one (a CSV, JSONL or "
                f"parquet file of {self.spec.item.plural})"
            )
        return load_items(path, self.spec.item)


def language_name(code: str | None) -> str | None:
    """``pt-BR`` -> ``Portuguese (pt-BR)``; a code pycountry does not know is kept as is."""
    if not code:
        return None
    import pycountry

    found = pycountry.languages.get(alpha_2=code.split("-")[0].lower())
    return f"{found.name} ({code})" if found is not None else code


def builtin_tasks() -> list[str]:
    """Names of the shipped tasks."""
    return sorted(p.parent.name for p in tasks_dir().glob(f"*/{SPEC_FILE}"))


def _resolve(folder: Path, name: str) -> Path | None:
    for base in (folder, prompts_dir()):
        path = (base / name).resolve()
        if path.is_relative_to(base.resolve()) and path.is_file():
            return path
    return None


@lru_cache(maxsize=64)
def _load(folder: Path, builtin: bool, stamp: int) -> Task:
    from gravity.io import load_yaml_model

    spec_path = folder / SPEC_FILE
    spec = load_yaml_model(spec_path, TaskSpec)
    sources: dict[str, tuple[Path, str]] = {}
    for role in ROLE_VARIABLES:
        name = getattr(spec.templates, role)
        path = _resolve(folder, name)
        if path is None:
            raise GravityError(
                f"{spec_path}: templates.{role}: template '{name}' not found in {folder} "
                "nor among the shipped templates"
            )
        sources[role] = (path, path.read_text(encoding="utf-8"))
    if spec.catalog is not None and not (folder / spec.catalog).is_file():
        raise GravityError(f"{spec_path}: catalog: no file '{spec.catalog}' in {folder}")
    task = Task(spec, folder, builtin, sources)
    from gravity.taskcheck import check_templates  # it renders through Task: imported here

    check_templates(task)  # a hostile template fails every command before any model call
    return task


def load_task(ref: str | Path | None = None) -> Task:
    """The task named ``ref`` (a built-in name) or in the folder ``ref``; default: the book
    task. Errors name the file and the field."""
    ref = DEFAULT_TASK if ref is None else ref
    text = str(ref)
    builtin = "/" not in text and "\\" not in text and not text.startswith(".")
    folder = (tasks_dir() / text) if builtin else Path(text).expanduser()
    if builtin and not (folder / SPEC_FILE).is_file():
        if Path(text).is_dir():
            builtin, folder = False, Path(text)
        else:
            raise UnknownTaskError(
                f"no task '{text}'; built-in: {', '.join(builtin_tasks())}, or give the path "
                "of a task folder"
            )
    spec_path = folder / SPEC_FILE
    if not spec_path.is_file():
        raise UnknownTaskError(f"{folder}: no {SPEC_FILE} (is this a task folder?)")
    folder = folder.resolve()
    stamp = max(p.stat().st_mtime_ns for p in folder.iterdir())  # an edited file reloads
    return _load(folder, builtin, stamp)
