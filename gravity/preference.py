"""TRL's preference format: its row model, and the loader that training and evaluation read.

A preference dataset has ``prompt``, ``chosen`` and ``rejected`` columns, each text (standard
format) or a list of chat messages (conversational format). ``gravity export`` writes it;
``gravity train`` and the evaluation's leakage check read it back with
``load_preference_data``, from an export folder (hf/parquet/jsonl) or a single file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gravity.errors import GravityError
from gravity.io import Record

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")


class Message(BaseModel):
    """One chat message of a conversational preference row."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool"]
    content: str


Turns = str | Annotated[list[Message], Field(min_length=1)]


class PreferenceRow(BaseModel):
    """The TRL columns of one row: text (standard format) or messages (conversational)."""

    model_config = ConfigDict(extra="ignore")

    prompt: Turns
    chosen: Turns
    rejected: Turns


def load_preference_data(path: str | Path, split: str = "train") -> Any:
    """A preference dataset from an export folder (hf/parquet/jsonl) or a single file, with the
    TRL columns checked: any failure reading it is one error naming the file."""
    from gravity.io import reading

    path = Path(path)
    if not path.exists():
        raise GravityError(f"{path}: no such dataset")
    with reading(path):
        ds = _read_preference_data(path, split)
        _require_columns(path, ds.column_names)
    return ds


def _require_columns(path: Path, columns: Any, line: int | None = None) -> None:
    missing = [c for c in PREFERENCE_COLUMNS if c not in columns]
    if missing:
        where = f"{path}:{line}" if line is not None else f"{path}"
        raise GravityError(
            f"{where}: missing column(s) {', '.join(missing)}; a preference dataset needs "
            f"{', '.join(PREFERENCE_COLUMNS)} (TRL's conversational preference format)"
        )


def _read_preference_data(path: Path, split: str) -> Any:
    from datasets import Dataset, load_from_disk

    from gravity.io import jsonl_records, parquet_rows, parse_json, read_text, validate

    if path.is_dir() and (path / "dataset_dict.json").is_file():
        dd = load_from_disk(str(path))
        if split not in dd:
            raise GravityError(f"{path}: no '{split}' split; has {', '.join(dd)}")
        return _check_preference_rows(path, dd[split])
    if path.is_dir() and (path / "dataset_info.json").is_file():
        return _check_preference_rows(path, load_from_disk(str(path)))
    files = (
        [path]
        if path.is_file()
        else sorted([*path.glob(f"{split}.parquet"), *path.glob(f"{split}.jsonl")])
    )
    if not files:
        raise GravityError(f"{path}: no {split}.parquet or {split}.jsonl")
    rows: list[Any] = []
    for file in files:
        # Read here, not through `datasets.load_dataset`: no cache is written, and every
        # problem names the file and line.
        if file.suffix == ".parquet":
            records = parquet_rows(file)
        elif file.suffix == ".jsonl":
            records = list(jsonl_records(read_text(file), file))
        elif file.suffix == ".json":
            text = read_text(file)
            if text.lstrip().startswith("["):
                records = [Record(i, r) for i, r in enumerate(parse_json(text, file), 1)]
            else:
                records = list(jsonl_records(text, file))
        else:
            raise GravityError(f"{file}: unsupported data file; use .parquet or .jsonl")
        for record in records:
            if record.problem is not None:
                raise record.problem
            if isinstance(record.data, dict):
                _require_columns(file, record.data, record.line)
            validate(PreferenceRow, record.data, file, record.line, empty="<record>")
            rows.append(record.data)
    if not rows:
        raise GravityError(f"{path}: no rows")
    return Dataset.from_list(rows)


def _check_preference_rows(path: Path, ds: Any) -> Any:
    """``ds``, once each row's prompt/chosen/rejected is text or a list of {role, content}
    messages."""
    from pydantic import ValidationError

    from gravity.errors import InputError, validation_problems

    missing = [c for c in PREFERENCE_COLUMNS if c not in ds.column_names]
    if missing:
        return ds  # reported by the caller, with the columns it needs
    for number, row in enumerate(ds.select_columns(list(PREFERENCE_COLUMNS)).to_list(), 1):
        try:
            PreferenceRow.model_validate(row)
        except ValidationError as exc:
            raise InputError(
                validation_problems(exc, f"{path} (row {number})", PreferenceRow)
            ) from None
    return ds
