"""Errors that the CLI turns into one clear line and exit code 2, and the one formatter of
pydantic validation errors (``FILE[:LINE]: field.path: reason``) every loader uses."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

MAX_PROBLEMS = 50
"""At most this many problems are reported for one file; the rest are counted."""


class GravityError(Exception):
    """A user-facing error: bad input, missing optional dependency, unknown name.

    The message is printed as is (no traceback), so it must name the file and field at fault.
    """


class MissingDependencyError(GravityError):
    """An optional extra is needed for the requested feature."""

    def __init__(self, what: str, extra: str, package: str | None = None) -> None:
        pkg = package or extra
        super().__init__(
            f"{what} needs the optional dependency '{pkg}': pip install 'gravity[{extra}]'"
        )


def printable(text: str, limit: int = 300) -> str:
    """``text`` on one line, control and unencodable characters escaped, at most ``limit``
    characters: safe to print whatever bytes a user's file held."""
    out = []
    for char in " ".join(str(text).split()):
        out.append(char if char.isprintable() else repr(char)[1:-1])
    line = "".join(out)
    return line if len(line) <= limit else line[: limit - 3] + "..."


@dataclass
class Problem:
    """One problem with an input: printed as ``SOURCE[:LINE]: [field: ]reason``.

    ``source`` is a file path or a flag (``--country``).
    """

    source: Any
    reason: str
    field: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else f"{self.source}"
        field = f"{printable(self.field, 120)}: " if self.field else ""
        return f"{where}: {field}{printable(self.reason)}"


class InputError(GravityError):
    """One or more problems with a user's input; each is one line naming the file (or flag)."""

    def __init__(self, problems: list[Problem], more: int = 0) -> None:
        if len(problems) > MAX_PROBLEMS:
            more += len(problems) - MAX_PROBLEMS
            problems = problems[:MAX_PROBLEMS]
        self.problems = problems
        self.more = more
        lines = [str(p) for p in problems]
        if more:
            lines.append(f"{problems[-1].source}: ... and {more} more problem(s) not shown")
        super().__init__("\n".join(lines))


# --- the one formatter of pydantic validation errors --------------------------------------------


def _members(tp: Any) -> list[Any]:
    """The alternatives of a Union/Optional/Annotated type, else [tp]."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _members(typing.get_args(tp)[0])
    if origin is typing.Union or isinstance(tp, types.UnionType):
        return [m for arg in typing.get_args(tp) for m in _members(arg)]
    return [tp]


def _child(tp: Any, part: Any) -> Any | None:
    """The type found at ``part`` (a field name, list index or dict key) inside ``tp``."""
    for member in _members(tp):
        if isinstance(member, type) and issubclass(member, BaseModel):
            if isinstance(part, str) and part in member.model_fields:
                return member.model_fields[part].annotation
            continue
        origin, args = typing.get_origin(member), typing.get_args(member)
        if origin in (list, tuple, set, frozenset) and isinstance(part, int) and args:
            return args[0]
        if origin is dict and len(args) == 2:
            return args[1]
    return None


def fields_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """The field names valid at ``loc`` inside ``model`` (empty where unknown)."""
    tp: Any = model
    for part in loc:
        child = _child(tp, part)
        if child is None and isinstance(part, str) and len(_members(tp)) > 1:
            continue  # a union tag such as 'list[float]' in the location: skip it
        if child is None:
            return []
        tp = child
    names: list[str] = []
    for member in _members(tp):
        if isinstance(member, type) and issubclass(member, BaseModel):
            names += [n for n in member.model_fields if n not in names]
    return names


def _reason(err: Any, model: type[BaseModel] | None) -> str:
    loc = tuple(err.get("loc", ()))
    if err.get("type") == "extra_forbidden" and loc:
        name = str(loc[-1])
        valid = fields_at(model, loc[:-1])
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        if close:
            return f"unknown field '{name}'; did you mean '{close[0]}'?"
        if valid:
            shown = ", ".join(valid[:15]) + (", ..." if len(valid) > 15 else "")
            return f"unknown field '{name}'; valid: {shown}"
        return f"unknown field '{name}'"
    msg = str(err.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def field_name(loc: tuple[Any, ...], empty: str = "<record>") -> str:
    """``('interests', 'genres', 0)`` -> ``interests.genres.0``."""
    return ".".join(str(part) for part in loc) or empty


def first_problem(
    exc: ValidationError, model: type[BaseModel] | None = None, empty: str = "<record>"
) -> str:
    """The first error of ``exc`` as ``field: reason``: the one-line form of a file's error."""
    err = exc.errors()[0]
    return f"{field_name(tuple(err.get('loc', ())), empty)}: {_reason(err, model)}"


def validation_problems(
    exc: ValidationError,
    source: Any,
    model: type[BaseModel] | None = None,
    line_of: Callable[[tuple[Any, ...]], int | None] | None = None,
    line: int | None = None,
    prefix: tuple[Any, ...] = (),
    empty: str = "<record>",
) -> list[Problem]:
    """Every error of ``exc`` as a ``Problem`` naming ``source``, the field and the reason.

    ``model`` (the model that was validated) lets an unknown field suggest the closest valid
    one; ``line_of`` maps an error location to a line of the source file.
    """
    problems = []
    for err in exc.errors():
        loc = prefix + tuple(err.get("loc", ()))
        where = line_of(loc) if line_of is not None else line
        problems.append(Problem(source, _reason(err, model), field_name(loc, empty), where))
    return problems


def flag_problem(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """The first error of ``exc`` as ``--flag-name: reason`` (for values given as CLI flags)."""
    err = exc.errors()[0]
    loc = tuple(err.get("loc", ()))
    names = [str(part) for part in loc if isinstance(part, str)]
    flag = "--" + names[-1].replace("_", "-") if names else "<flags>"
    return f"{flag}: {printable(_reason(err, model))}"
