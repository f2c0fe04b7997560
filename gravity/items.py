"""Items of a task (books, products, destinations): the schema a task declares, the pydantic
model built from it, catalogs validated against it, and the view templates see.

A catalog (CSV, JSONL, parquet) is read with the same guarded reader as every input: every
problem (bounded) names the file, the line and the field.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from gravity.errors import MAX_PROBLEMS, InputError, Problem, validation_problems
from gravity.io import (
    Record,
    csv_records,
    file_error,
    jsonl_records,
    parquet_rows,
    read_text,
    reading,
)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

Item = BaseModel
"""An item of a catalog: an instance of a task's item model (``ItemSchema.model``); every item
has ``id``."""


class FieldSpec(BaseModel):
    """One item field of a task's schema."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["str", "int", "float", "list", "bool"] = Field(
        default="str",
        description="str; int; float; bool; list (of strings; in a CSV one cell separated by ';').",
    )
    required: bool = Field(
        default=False, description="Every row needs a non-empty value (else: empty means none)."
    )
    column: bool | None = Field(
        default=None,
        description="The column must be present even where values may be empty (default: "
        "the value of required).",
    )
    shown: bool = Field(
        default=True,
        description="Templates may show it to a model; a hidden field (an internal code, a "
        "cost) is kept in the catalog but a template that uses it fails `gravity tasks check`.",
    )
    min_length: int | None = Field(default=None, ge=0, description="Fewest characters (str).")
    max_length: int | None = Field(default=None, ge=1, description="Most characters (str).")
    description: str = Field(default="", description="What the field holds (documentation).")


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _split_list(value: Any) -> Any:
    if isinstance(value, str):  # CSV: "fantasy; adventure"
        return tuple(g.strip() for g in value.split(";") if g.strip())
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else value


class ItemSchema(BaseModel):
    """What an item of the task is: its noun, its fields and which one is its id."""

    model_config = ConfigDict(extra="forbid")

    noun: str = Field(
        default="item",
        pattern=r"^[a-z][a-z_]{0,29}$",
        description="What one item is called ('book', 'product'); templates see the item as "
        "`item` and under this name.",
    )
    plural: str = Field(default="items", min_length=1, description="The noun's plural.")
    id_field: str = Field(default="id", description="The field holding each item's unique id.")
    title_field: str = Field(
        default="title",
        description="The field that names an item where a prompt names it (judges, forms).",
    )
    fields: dict[str, FieldSpec] = Field(description="Field name -> its spec, in column order.")
    extra_columns: Literal["ignore", "forbid", "keep"] = Field(
        default="ignore",
        description="Catalog columns the schema lacks: ignored, refused, or kept as free "
        "attributes that reach the templates (as text).",
    )

    @field_validator("fields")
    @classmethod
    def _names(cls, value: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        bad = [n for n in value if not _NAME.match(n)]
        if bad:
            raise ValueError(f"field name '{bad[0]}' must be lower_snake_case (a-z, 0-9, _)")
        return value

    @model_validator(mode="after")
    def _id(self) -> ItemSchema:
        if self.id_field not in self.fields:
            raise ValueError(f"id_field '{self.id_field}' is not one of the fields")
        if self.fields[self.id_field].type != "str":
            raise ValueError(f"id_field '{self.id_field}' must have type str")
        if self.title_field not in self.fields:
            raise ValueError(f"title_field '{self.title_field}' is not one of the fields")
        if self.noun in ("item", "task"):
            return self
        if self.noun in self.fields:
            raise ValueError(f"noun '{self.noun}' must not also be a field name")
        return self

    def required_columns(self) -> list[str]:
        """Columns every catalog must have (the id and the required ones)."""
        return [
            name
            for name, spec in self.fields.items()
            if name == self.id_field or (spec.required if spec.column is None else spec.column)
        ]

    def model(self) -> type[BaseModel]:
        """The pydantic model of one item; its id is always the attribute ``id``. One class
        per schema, so items of the same schema compare equal field by field."""
        return _item_model(self.model_dump_json())

    def listed(self, item: BaseModel) -> list[tuple[str, str]]:
        """(name, value) of the shown, non-empty fields but the id, as text (lists joined)."""
        out = []
        for name in self.shown():
            if name == self.id_field:
                continue
            value = getattr(item, name)
            if value is None or value == () or value == "":
                continue
            text = ", ".join(value) if isinstance(value, tuple) else str(value)
            out.append((name.replace("_", " "), text))
        return out

    def shown(self) -> list[str]:
        """Field names templates may use."""
        return [n for n, s in self.fields.items() if s.shown]


def _field(name: str, spec: FieldSpec, id_field: str) -> tuple[Any, Any]:
    if name == id_field:
        alias = AliasChoices(name, "id") if name != "id" else None
        return (Annotated[str, Field(pattern=ID_PATTERN)], Field(validation_alias=alias))
    if spec.type == "list":
        return (Annotated[tuple[str, ...], BeforeValidator(_split_list)], ())
    kind: Any = {"str": str, "int": int, "float": float, "bool": bool}[spec.type]
    if spec.type == "str":
        low = spec.min_length if spec.min_length is not None else (1 if spec.required else None)
        kind = Annotated[str, Field(min_length=low, max_length=spec.max_length)]
    if spec.required:
        return (Annotated[kind, BeforeValidator(_blank_to_none)], ...)
    return (Annotated[kind | None, BeforeValidator(_blank_to_none)], None)


@lru_cache(maxsize=32)
def _item_model(schema_json: str) -> type[BaseModel]:
    schema = ItemSchema.model_validate_json(schema_json)
    extra = "allow" if schema.extra_columns == "keep" else schema.extra_columns
    fields = {
        ("id" if name == schema.id_field else name): _field(name, spec, schema.id_field)
        for name, spec in schema.fields.items()
    }
    return create_model(  # type: ignore[call-overload,no-any-return]
        schema.noun.capitalize(),
        __config__=ConfigDict(extra=extra, frozen=True, populate_by_name=True),
        **fields,
    )


class ItemView:
    """What a template sees of an item: its shown fields (and free attributes), read-only.

    A field the schema lacks or hides is undefined, so a strict template fails on it."""

    __slots__ = ("_values",)

    def __init__(self, item: BaseModel, schema: ItemSchema) -> None:
        values = {
            ("id" if n == schema.id_field else n): getattr(
                item, "id" if n == schema.id_field else n
            )
            for n in schema.shown()
        }
        if schema.id_field != "id" and schema.fields[schema.id_field].shown:
            values[schema.id_field] = values["id"]
        values.update(item.model_extra or {})
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("items are read-only")


def _rows(path: Path) -> list[Record]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return list(jsonl_records(read_text(path), path))
    if suffix == ".csv":
        return csv_records(read_text(path), path)[1]
    if suffix == ".parquet":
        return parquet_rows(path)
    raise file_error(path, "unknown catalog format; use .csv, .jsonl or .parquet")


def load_items(path: str | Path, schema: ItemSchema) -> list[BaseModel]:
    """The items of the catalog at ``path``, validated against ``schema``; every problem
    (bounded) names the file, the line (row) and the field."""
    path = Path(path)
    model = schema.model()
    noun = schema.noun
    with reading(path):
        rows = _rows(path)
        if not rows:
            raise file_error(path, f"no {schema.plural} in catalog")
        first = next((r.data for r in rows if isinstance(r.data, dict)), None)
        required = schema.required_columns()
        missing = [c for c in required if first is not None and c not in first]
        if missing:
            raise file_error(
                path, f"missing column(s) {', '.join(missing)}; required: {', '.join(required)}"
            )
        items: list[BaseModel] = []
        problems: list[Problem] = []
        seen: dict[str, int] = {}
        for record in rows:
            if len(problems) > MAX_PROBLEMS:
                break
            if record.problem is not None:
                problems += record.problem.problems
                continue
            if not isinstance(record.data, dict):
                problems.append(
                    Problem(path, f"a {noun} must be a mapping", "<record>", record.line)
                )
                continue
            try:
                item = model.model_validate(record.data)
            except ValidationError as exc:
                problems += validation_problems(exc, path, model, line=record.line)
                continue
            if item.id in seen:  # type: ignore[attr-defined]
                reason = f"duplicate {noun} id '{item.id}' (first on line {seen[item.id]})"  # type: ignore[attr-defined]
                problems.append(Problem(path, reason, schema.id_field, record.line))
                continue
            seen[item.id] = record.line  # type: ignore[attr-defined]
            items.append(item)
        if problems:
            raise InputError(problems)
        return items
