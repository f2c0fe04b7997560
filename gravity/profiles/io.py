"""Read, validate and write profile files (JSON, JSONL, YAML) with line-precise errors."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gravity.errors import GravityError
from gravity.profiles.culture import country_priors
from gravity.profiles.models import UserProfile

SUFFIXES = {".json": "json", ".jsonl": "jsonl", ".yaml": "yaml", ".yml": "yaml"}


@dataclass
class Problem:
    """One validation problem, printed as ``FILE:LINE: field.path: reason``."""

    path: Path
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.reason}"


class ProfileFileError(GravityError):
    """A profile file that cannot be read or holds invalid records."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass
class _Record:
    line: int
    data: Any
    node: yaml.Node | None  # for field line numbers, where the format gives them


def _file_format(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ProfileFileError(
            [Problem(path, 1, "<file>", f"unknown extension; use one of {', '.join(SUFFIXES)}")]
        )
    return fmt


def _records(path: Path) -> Iterator[_Record]:
    fmt = _file_format(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileFileError([Problem(path, 1, "<file>", f"cannot read: {exc}")]) from None
    if fmt == "jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield _Record(number, json.loads(line), None)
            except json.JSONDecodeError as exc:
                raise ProfileFileError(
                    [Problem(path, number, "<json>", f"invalid JSON: {exc.msg}")]
                ) from None
        return
    try:
        data = json.loads(text) if fmt == "json" else list(yaml.safe_load_all(text))
    except json.JSONDecodeError as exc:
        raise ProfileFileError([Problem(path, exc.lineno, "<json>", exc.msg)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        reason = getattr(exc, "problem", None) or str(exc)
        raise ProfileFileError([Problem(path, line, "<yaml>", f"invalid YAML: {reason}")]) from None
    try:  # JSON is (nearly) YAML: compose once more for node positions.
        nodes = list(yaml.compose_all(text))
    except yaml.YAMLError:
        nodes = []
    if fmt == "json":
        data = [data]
    items: list[tuple[Any, yaml.Node | None]] = []
    for index, doc in enumerate(data):
        node = nodes[index] if index < len(nodes) else None
        if isinstance(doc, list):
            children = node.value if isinstance(node, yaml.SequenceNode) else [None] * len(doc)
            items.extend(zip(doc, children, strict=False))
        elif doc is not None:
            items.append((doc, node))
    if not items:
        raise ProfileFileError([Problem(path, 1, "<file>", "no profiles in file")])
    for doc, node in items:
        line = node.start_mark.line + 1 if node is not None else 1
        yield _Record(line, doc, node)


def _line_of(record: _Record, loc: tuple[Any, ...]) -> int:
    node, line = record.node, record.line
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if k.value == key]
            if not match:
                # The key itself may be the problem (extra field): point at it.
                keys = [k for k, _ in node.value if k.value == key]
                return keys[0].start_mark.line + 1 if keys else line
            node = match[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _problems(path: Path, record: _Record, exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = ".".join(str(part) for part in loc) or "<record>"
        reason = err["msg"].removeprefix("Value error, ")
        problems.append(Problem(path, _line_of(record, loc), field, reason))
    return problems


def with_country_priors(profile: UserProfile) -> UserProfile:
    """Fill missing Hofstede and WVS facets from the reader's country (given values win)."""
    if profile.hofstede is not None and profile.wvs is not None:
        return profile
    priors = country_priors(profile.country)
    return profile.model_copy(
        update={
            "hofstede": profile.hofstede or priors.hofstede,
            "wvs": profile.wvs or priors.wvs,
        }
    )


def load_profiles(path: str | Path, fill_priors: bool = True) -> list[UserProfile]:
    """Load every profile in a JSON, JSONL or YAML file; raise on the first invalid record.

    Missing culture facets are filled from the country priors unless ``fill_priors`` is False.
    Duplicate ids within the file are an error.
    """
    path = Path(path)
    profiles: list[UserProfile] = []
    seen: dict[str, int] = {}
    for record in _records(path):
        if not isinstance(record.data, dict):
            raise ProfileFileError(
                [Problem(path, record.line, "<record>", "a profile must be a mapping")]
            )
        try:
            profile = UserProfile.model_validate(record.data)
        except ValidationError as exc:
            raise ProfileFileError(_problems(path, record, exc)) from None
        if profile.id in seen:
            raise ProfileFileError(
                [
                    Problem(
                        path,
                        record.line,
                        "id",
                        f"duplicate id '{profile.id}' (first on line {seen[profile.id]})",
                    )
                ]
            )
        seen[profile.id] = record.line
        profiles.append(with_country_priors(profile) if fill_priors else profile)
    return profiles


def load_many(paths: list[Path], fill_priors: bool = True) -> list[UserProfile]:
    """Load profiles from several files; ids must be unique across all of them."""
    profiles: list[UserProfile] = []
    origin: dict[str, Path] = {}
    for path in paths:
        for profile in load_profiles(path, fill_priors):
            if profile.id in origin:
                raise GravityError(
                    f"{path}: id: duplicate id '{profile.id}' (also in {origin[profile.id]})"
                )
            origin[profile.id] = path
            profiles.append(profile)
    return profiles


def profile_to_dict(profile: UserProfile) -> dict[str, Any]:
    """A profile as plain JSON-ready data, without unset optional facets."""
    return profile.model_dump(mode="json", exclude_none=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file and rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump_profiles(profiles: list[UserProfile], path: str | Path) -> None:
    """Write profiles as JSONL, JSON (a list) or YAML (one document, or a list), atomically."""
    path = Path(path)
    fmt = _file_format(path)
    data = [profile_to_dict(p) for p in profiles]
    if fmt == "jsonl":
        text = "".join(json.dumps(d, ensure_ascii=False, sort_keys=False) + "\n" for d in data)
    elif fmt == "json":
        text = json.dumps(data if len(data) != 1 else data[0], ensure_ascii=False, indent=2) + "\n"
    else:
        text = yaml.safe_dump(
            data if len(data) != 1 else data[0], sort_keys=False, allow_unicode=True
        )
    atomic_write_text(path, text)
