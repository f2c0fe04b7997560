"""Reading helpers shared by the importers: CSV and JSONL rows with file-precise errors."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import sys
import zipfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from gravity.errors import GravityError
from gravity.events.store import EventsFileError
from gravity.io import describe

# Review texts and descriptions can exceed csv's default 128 KiB field limit.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def open_text(path: Path, encoding: str, member: str | None = None) -> IO[str]:
    """A text stream over ``path`` (gzip by suffix) or over ``member`` of a zip archive."""
    try:
        if member is not None:
            archive = zipfile.ZipFile(path)
            raw: IO[bytes] = archive.open(member)
        elif path.suffix == ".gz":
            raw = gzip.open(path, "rb")  # noqa: SIM115 (returned to the caller)
        else:
            raw = open(path, "rb")  # noqa: SIM115 (returned to the caller)
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise EventsFileError(f"{path}: cannot read: {exc}") from None
    return io.TextIOWrapper(raw, encoding=encoding, newline="")


def csv_rows(
    name: str,
    stream: IO[str],
    required: tuple[str, ...],
    allowed: tuple[str, ...] | None = None,
    **dialect: Any,
) -> Iterator[tuple[int, str | None, dict[str, str]]]:
    """Yield ``(line, problem, row)`` per record after checking the header.

    ``row`` maps header names to values; ``problem`` is None, or the reject reason of a record
    whose field count differs from the header's. A file that cannot be decoded
    or parsed raises ``EventsFileError`` naming the file and line.
    """
    reader = csv.reader(stream, **dialect)
    line = 1
    try:
        header = next(reader, None)
        if header is None:
            raise EventsFileError(f"{name}:1: empty file (expected a header row)")
        header = [h.strip().lstrip("\ufeff") for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            raise EventsFileError(
                f"{name}:1: header: missing column(s) {', '.join(missing)}; "
                f"found {', '.join(header[:12]) or 'none'}"
            )
        if allowed is not None:
            unknown = [c for c in header if c not in allowed]
            if unknown:
                raise EventsFileError(
                    f"{name}:1: header: unknown column(s) {', '.join(unknown)}; "
                    f"allowed: {', '.join(allowed)}"
                )
        width = len(header)
        for fields in reader:
            line = reader.line_num
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if any("\x00" in f for f in fields):
                raise EventsFileError(f"{name}:{line}: NUL byte: a binary or corrupt file")
            if len(fields) != width:
                yield line, f"<row>: {len(fields)} fields, expected {width}", {}
                continue
            yield line, None, dict(zip(header, fields))
    except csv.Error as exc:
        raise EventsFileError(f"{name}:{reader.line_num or line}: malformed CSV: {exc}") from None
    except UnicodeDecodeError as exc:
        raise EventsFileError(f"{name}:{line}: not valid {exc.encoding} text") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise EventsFileError(f"{name}: cannot read: {exc}") from None
    except GravityError:
        raise
    except Exception as exc:  # any other failure of reading or parsing: one line naming the file
        raise unreadable(name, reader.line_num or line, exc) from None


def unreadable(name: Any, line: int, exc: Exception) -> EventsFileError:
    """``EventsFileError`` naming the file and line for a failure no other clause expected
    (a compressed stream damaged midway, nesting too deep to parse, memory)."""
    return EventsFileError(f"{name}:{line}: {describe(exc)[2]}")


def jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line, object)`` per non-blank line; a line that is not a JSON object raises
    ``EventsFileError`` naming the file and line."""
    stream = open_text(path, "utf-8")
    at = 1  # the line being read or parsed
    try:
        with stream:
            for number, text in enumerate(stream, start=1):
                at = number
                if text.strip():
                    try:
                        value = json.loads(text)
                    except json.JSONDecodeError as exc:
                        raise EventsFileError(f"{path}:{at}: invalid JSON: {exc.msg}") from None
                    if not isinstance(value, dict):
                        raise EventsFileError(f"{path}:{at}: a record must be a JSON object")
                    yield number, value
                at = number + 1  # a failure from here on is in reading the next line
    except UnicodeDecodeError:
        raise EventsFileError(f"{path}:{at}: not valid UTF-8 text") from None
    except (OSError, EOFError) as exc:
        raise EventsFileError(f"{path}: cannot read: {exc}") from None
    except GravityError:
        raise
    except Exception as exc:  # any other failure of reading or parsing: one line naming the file
        raise unreadable(path, at, exc) from None


def parse_time(value: Any) -> datetime | None:
    """A timestamp from unix seconds, unix milliseconds (> 1e11) or an ISO-8601 / Y/M/D date.

    Raises ``ValueError`` for anything else.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        number = float(value)
        if number > 1e11:  # milliseconds (Amazon Reviews 2023)
            number /= 1000.0
        return datetime.fromtimestamp(number, tz=timezone.utc)
    text = str(value).strip().replace("/", "-")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a timestamp: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def parse_int(value: Any) -> int | None:
    """A whole number from text ("4", "4.0", "1947.0"), None for blank or NULL; ``ValueError``
    otherwise: a fraction ("4.5") is not truncated, infinity and NaN are not numbers."""
    if value is None:
        return None
    text = str(value).strip()
    if text in ("", "NULL", "null", "None"):
        return None
    if "." not in text:
        return int(text)
    number = float(text)
    if not math.isfinite(number) or number != int(number):
        raise ValueError(f"not a whole number: {text[:40]!r}")
    return int(number)
