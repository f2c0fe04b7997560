"""Read, validate and write profile files (JSON, JSONL, YAML) with line-precise errors.

Reading goes through the guarded layer of ``gravity.io`` (which also writes files atomically).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gravity.errors import MAX_PROBLEMS, GravityError, InputError, Problem, validation_problems
from gravity.io import (
    YAML_LOADER,
    Record,
    atomic_write_text,
    jsonl_records,
    node_line,
    parse_json,
    read_text,
    reading,
    yaml_documents,
)
from gravity.profiles.culture import country_priors, culture_gaps
from gravity.profiles.models import UserProfile

__all__ = [
    "SUFFIXES",
    "Problem",
    "ProfileFileError",
    "check_profiles",
    "dump_profiles",
    "load_many",
    "load_profiles",
    "profile_to_dict",
    "with_country_priors",
]

log = logging.getLogger(__name__)

SUFFIXES = {".json": "json", ".jsonl": "jsonl", ".yaml": "yaml", ".yml": "yaml"}


class ProfileFileError(InputError):
    """A profile file that cannot be read or holds invalid records (``.problems`` lists them)."""


def _file_format(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ProfileFileError(
            [Problem(path, f"unknown extension; use one of {', '.join(SUFFIXES)}", "<file>", 1)]
        )
    return fmt


def _records(path: Path) -> list[Record]:
    fmt = _file_format(path)
    text = read_text(path)
    if fmt == "jsonl":
        return _nonempty(path, list(jsonl_records(text, path)))
    if fmt == "json":
        data = parse_json(text, path)
        try:  # JSON is (nearly) YAML: compose it for the line numbers of fields.
            node = yaml.compose(text, Loader=YAML_LOADER)
        except Exception:
            node = None
        docs = [Record(1, data, node=node)]
    else:
        docs = yaml_documents(text, path)
    records: list[Record] = []
    for doc in docs:
        if isinstance(doc.data, list):
            children = (
                doc.node.value
                if isinstance(doc.node, yaml.SequenceNode)
                else [None] * len(doc.data)
            )
            for item, child in zip(doc.data, children, strict=False):
                line = child.start_mark.line + 1 if child is not None else doc.line
                records.append(Record(line, item, node=child))
        elif doc.data is not None:
            records.append(doc)
    return _nonempty(path, records)


def _nonempty(path: Path, records: list[Record]) -> list[Record]:
    if not records:
        raise ProfileFileError([Problem(path, "no profiles in file", "<file>", 1)])
    return records


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


def check_profiles(
    path: str | Path, fill_priors: bool = True, limit: int = MAX_PROBLEMS
) -> tuple[list[UserProfile], list[Problem]]:
    """The valid profiles of a file and the problems of the others (at most ``limit`` + 1:
    reading stops once more than ``limit`` are found). Never raises for bad content."""
    path = Path(path)
    profiles: list[UserProfile] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    try:
        with reading(path):
            for record in _records(path):
                if len(problems) > limit:
                    break
                if record.problem is not None:
                    problems += record.problem.problems
                    continue
                if not isinstance(record.data, dict):
                    problems.append(
                        Problem(path, "a profile must be a mapping", "<record>", record.line)
                    )
                    continue
                try:
                    profile = UserProfile.model_validate(record.data)
                except ValidationError as exc:
                    problems += validation_problems(
                        exc,
                        path,
                        UserProfile,
                        line_of=lambda loc, r=record: node_line(r.node, loc, r.line),
                    )
                    continue
                if profile.id in seen:
                    reason = f"duplicate id '{profile.id}' (first on line {seen[profile.id]})"
                    problems.append(Problem(path, reason, "id", record.line))
                    continue
                seen[profile.id] = record.line
                profiles.append(with_country_priors(profile) if fill_priors else profile)
    except InputError as exc:
        problems += exc.problems
    return profiles, problems


def _warn_culture_gaps(path: Path, profiles: list[UserProfile]) -> None:
    """One warning per country whose readers lack (some) culture values: prompts will too."""
    by_note: dict[str, list[str]] = defaultdict(list)
    for profile in profiles:
        for note in culture_gaps(profile):
            by_note[note].append(profile.id)
    for note, ids in by_note.items():
        log.warning("%s: %d reader(s) (e.g. %s): %s", path, len(ids), ids[0], note)


def load_profiles(path: str | Path, fill_priors: bool = True) -> list[UserProfile]:
    """Load every profile in a JSON, JSONL or YAML file; raise with every problem (bounded).

    Missing culture facets are filled from the country priors unless ``fill_priors`` is False;
    readers left with no or partial culture values are logged as a warning. Duplicate ids
    within the file are an error.
    """
    path = Path(path)
    profiles, problems = check_profiles(path, fill_priors)
    if problems:
        raise ProfileFileError(problems)
    if fill_priors:
        _warn_culture_gaps(path, profiles)
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
