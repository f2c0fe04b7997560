"""Profiles streamed from files in a fixed order, with flat memory for any number of readers.

``ReaderStream(paths)`` validates every profile of every file (and that ids are unique across
them) before it yields any, so bad input is reported, one line per problem, before a stage
writes anything. It then yields the profiles in reader-key order (``reader_key``: the order of
the pair records' ids), whatever the order of the files. JSON Lines files are read line by
line with no limit on their size; JSON and YAML files are read whole (the usual size limit).
Profiles are held as JSON text in sorted runs of ``run_size``; more than one run is spilled to
a temporary folder (``TMPDIR``, ``gravity-readers-<pid>-<host>-*``) and merged, so memory stays
flat. The folder goes when the stream is closed; one a killed process left is removed by the
next stream on the same host (only when its process is gone).
"""

from __future__ import annotations

import heapq
import json
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gravity.errors import MAX_PROBLEMS, Problem, validation_problems
from gravity.io import jsonl_file_records, owner_tag, remove_dead
from gravity.profiles.culture import culture_gaps
from gravity.profiles.io import (
    ProfileFileError,
    _file_format,
    check_profiles,
    log,
    with_country_priors,
)
from gravity.profiles.models import UserProfile

RUN_SIZE = 10_000
"""Profiles held in memory (as JSON text) before a sorted run is spilled to disk."""
SPILL_PREFIX = "gravity-readers-"


def reader_key(reader_id: str) -> str:
    """Sort key of a reader: its records' ids (``mode:user:item:facet:index``) sort as these
    keys do, so readers taken in this order give their records in record-id order."""
    return reader_id + ":"


class ReaderStream:
    """The valid profiles of ``paths`` in ``reader_key`` order (see the module docstring).

    Raises ``ProfileFileError`` (every problem, bounded per file) or a duplicate-id error on
    construction. Iterate it as often as needed; ``close()`` removes its temporary files.
    """

    sorted_by_key = True

    def __init__(
        self, paths: list[Path], fill_priors: bool = True, run_size: int = RUN_SIZE
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.fill_priors = fill_priors
        self.run_size = run_size
        self._tmp: Path | None = None
        self._cleanup: weakref.finalize | None = None
        self._runs: list[Path] = []
        self._memory: list[str] = []  # the one run, when everything fits in it
        self.count = 0
        remove_dead(Path(tempfile.gettempdir()), SPILL_PREFIX)  # what killed streams left
        self._gaps: dict[tuple[int, str], list[Any]] = {}  # (file, note) -> [count, first id]
        try:
            self._read_all()
            self._check_unique()
        except BaseException:
            self.close()
            raise
        for (index, note), (count, first) in self._gaps.items():
            log.warning("%s: %d reader(s) (e.g. %s): %s", self.paths[index], count, first, note)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[UserProfile]:
        for line in self._lines():
            yield UserProfile.model_validate_json(line.split("\t", 3)[3])

    def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup()  # removes the spill folder (also run at exit if never closed)
            self._cleanup = self._tmp = None

    def __enter__(self) -> ReaderStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # reading -------------------------------------------------------------------------------
    def _read_all(self) -> None:
        buffer: list[str] = []
        for index, path in enumerate(self.paths):
            for line, profile in self._profiles(path):
                if self.fill_priors:
                    for note in culture_gaps(profile):
                        self._gaps.setdefault((index, note), [0, profile.id])[0] += 1
                key = json.dumps(reader_key(profile.id), ensure_ascii=False)
                buffer.append(f"{key}\t{index}\t{line}\t{profile.model_dump_json()}")
                self.count += 1
                if len(buffer) >= self.run_size:
                    self._spill(buffer)
                    buffer = []
        if self._runs:
            self._spill(buffer)
        else:
            self._memory = sorted(buffer, key=_line_key)

    def _profiles(self, path: Path) -> Iterator[tuple[int, UserProfile]]:
        """(line, profile) of one file's valid profiles, read once; its problems (bounded)
        are raised when the file ends, before any profile is used."""
        if _file_format(path) != "jsonl":
            profiles, problems = check_profiles(path, self.fill_priors)
            if problems:
                raise ProfileFileError(problems)
            yield from ((0, p) for p in profiles)
            return
        problems: list[Problem] = []
        saw = False
        for record in jsonl_file_records(path):
            saw = True
            if len(problems) > MAX_PROBLEMS:
                break
            if record.problem is not None:
                problems += record.problem.problems
            elif not isinstance(record.data, dict):
                reason = "a profile must be a mapping"
                problems.append(Problem(path, reason, "<record>", record.line))
            else:
                try:
                    profile = UserProfile.model_validate(record.data)
                except ValidationError as exc:
                    problems += validation_problems(exc, path, UserProfile, line=record.line)
                    continue
                yield record.line, with_country_priors(profile) if self.fill_priors else profile
        if problems:
            raise ProfileFileError(problems)
        if not saw:
            raise ProfileFileError([Problem(path, "no profiles in file", "<file>", 1)])

    def _spill(self, buffer: list[str]) -> None:
        if not buffer:
            return
        if self._tmp is None:
            parent, prefix = tempfile.gettempdir(), f"{SPILL_PREFIX}{owner_tag()}-"
            self._tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._tmp, ignore_errors=True)
        path = self._tmp / f"run-{len(self._runs):05d}.tsv"
        with path.open("w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in sorted(buffer, key=_line_key))
        self._runs.append(path)

    def _lines(self) -> Iterator[str]:
        if not self._runs:
            yield from self._memory
            return
        files = [p.open(encoding="utf-8") for p in self._runs]
        try:
            streams = [(line.rstrip("\n") for line in f) for f in files]
            yield from heapq.merge(*streams, key=_line_key)
        finally:
            for f in files:
                f.close()

    def _check_unique(self) -> None:
        """Duplicate ids are neighbours in key order: one error naming both places."""
        previous: list[str] | None = None
        for line in self._lines():
            fields = line.split("\t", 3)
            if previous is not None and fields[0] == previous[0]:
                (path, line), (first, first_line) = self._where(fields), self._where(previous)
                also = f"{first}:{first_line}" if first_line else str(first)
                reader_id = json.loads(fields[0])[:-1]
                raise ProfileFileError(
                    [Problem(path, f"duplicate id '{reader_id}' (also in {also})", "id", line)]
                )
            previous = fields[:3]

    def _where(self, fields: list[str]) -> tuple[Path, int | None]:
        path, line = self.paths[int(fields[1])], int(fields[2]) or None
        return path, line


def _line_key(line: str) -> str:
    return json.loads(line[: line.index("\t")])


def by_reader_key(profiles: list[UserProfile]) -> list[UserProfile]:
    """``profiles`` in ``reader_key`` order (a ``ReaderStream`` is in it already)."""
    return sorted(profiles, key=lambda p: reader_key(p.id))


__all__ = ["RUN_SIZE", "ReaderStream", "by_reader_key", "reader_key"]
