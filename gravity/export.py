"""Export a synthesis run as a dataset in TRL's conversational preference format.

Train/test split by reader (no reader in both), seeded; ``hf`` (``save_to_disk``), ``parquet``
or ``jsonl``; a dataset card with YAML metadata. The export is atomic: it is built in a temp
folder beside ``out`` and swapped in, so an interrupted export leaves the previous one intact.
``push_to_hub`` is opt-in; the token is read from ``HF_TOKEN`` only and never written anywhere.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import tempfile
from array import array
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field

from gravity.errors import GravityError
from gravity.intents.select import intent_counts
from gravity.io import remove_dead_dirs, settle_commit, swap_dir_into_place, temp_dir
from gravity.preference import PREFERENCE_COLUMNS, PreferenceRow

Format = Literal["hf", "parquet", "jsonl"]
FORMATS = ("hf", "parquet", "jsonl")


class PairRow(PreferenceRow):
    """A record of a run's ``pairs.jsonl``: the TRL columns and the reader it was made for."""

    user_id: Annotated[str, Field(min_length=1)]
    book_id: str | None = None


def _pairs_path(run_dir: Path) -> Path:
    path = Path(run_dir) / "pairs.jsonl"
    if not path.is_file():
        raise GravityError(f"{run_dir}: no pairs.jsonl; is this a `gravity generate` run folder?")
    return path


def scan_pairs(run_dir: Path) -> tuple[Path, set[str]]:
    """Check every record of a run folder's ``pairs.jsonl``, read line by line (no size limit):
    each a valid pair, each column of one JSON kind across records (Arrow needs one). Returns
    the file and the readers in it; any problem names the file, line and field."""
    users: set[str] = set()
    return _scan(run_dir, users.add), users


def _scan(run_dir: Path, add_user: Callable[[str], Any]) -> Path:
    """``scan_pairs``, handing each record's reader to ``add_user`` (flat memory when that
    keeps them on disk); returns the file."""
    from gravity.io import file_error, jsonl_file_records, validate

    path = _pairs_path(run_dir)
    rows = 0
    kinds: dict[str, tuple[str, int]] = {}  # column -> (JSON kind, first line)
    for record in jsonl_file_records(path):
        if record.problem is not None:
            raise record.problem
        row = record.data
        if not isinstance(row, dict):
            raise file_error(path, "a pair must be a mapping", record.line, "<record>")
        missing = [c for c in (*PREFERENCE_COLUMNS, "user_id") if c not in row]
        if missing:
            raise GravityError(f"{path}:{record.line}: missing field(s) {', '.join(missing)}")
        validate(PairRow, row, path, record.line, empty="<record>")
        for key, value in row.items():
            kind = _json_kind(value)
            first = kinds.setdefault(key, (kind, record.line))
            if first[0] in _VAGUE:
                kinds[key] = (kind, record.line)
            elif not _same_kind(kind, first[0]):
                raise file_error(
                    path, f"{kind} here, {first[0]} on line {first[1]}", record.line, key
                )
        add_user(row["user_id"])
        rows += 1
    if not rows:
        raise GravityError(f"{path}: no pairs to export (every row was rejected?)")
    return path


def iter_pairs(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a ``pairs.jsonl`` that ``scan_pairs`` checked, one at a time."""
    from gravity.io import jsonl_file_records

    for record in jsonl_file_records(path):
        yield record.data


def read_pairs(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run folder (``pairs.jsonl``), checked (see ``scan_pairs``), as a list."""
    path, _ = scan_pairs(run_dir)
    return list(iter_pairs(path))


_VAGUE = ("null", "a list of nothing")


def _same_kind(a: str, b: str) -> bool:
    """Whether Arrow can hold both in one column: null fits any, an empty list any list."""
    if a == b or "null" in (a, b):
        return True
    return "a list of nothing" in (a, b) and a.startswith("a list") and b.startswith("a list")


def _json_kind(value: Any, depth: int = 0) -> str:
    """A column's JSON kind, one list level deep ('text', 'a list of a mapping', ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        if depth:
            return "a list"
        inner = sorted({_json_kind(v, depth + 1) for v in value} - {"null"})
        return f"a list of {' and '.join(inner) or 'nothing'}"
    return "a mapping"


def _test_count(readers: int, test_size: float) -> int:
    """How many of ``readers`` go to the test split: the ``test_size`` share, at least one
    and not all when there are two or more."""
    n_test = round(readers * test_size)
    if test_size > 0 and readers > 1:
        n_test = min(max(n_test, 1), readers - 1)
    return n_test


def test_readers(users: Iterable[str], test_size: float, seed: int) -> set[str]:
    """The readers of the test split: a seeded shuffle of the sorted readers, the first
    ``test_size`` share (at least one and not all, when there are two or more)."""
    ordered = sorted(users)
    random.Random(f"gravity-split:{seed}").shuffle(ordered)
    return set(ordered[: _test_count(len(ordered), test_size)])


class _ReaderIndex:
    """``test_readers`` for more readers than memory should hold: the distinct readers in an
    SQLite file, the split drawn on their ranks. ``random.shuffle``'s draws depend only on the
    length, so shuffling the ranks 0..n-1 (4 bytes each) permutes as shuffling the sorted ids
    does, and the test readers are those of the same sorted positions. Ids are stored as UTF-8
    (lone surrogates kept by ``surrogatepass``), whose byte order is the code-point order
    Python sorts by."""

    BATCH = 10_000

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        try:
            self.db.execute("PRAGMA journal_mode=OFF")
            self.db.execute("PRAGMA synchronous=OFF")
            for table in ("reader", "test"):
                self.db.execute(f"CREATE TABLE {table} (id BLOB PRIMARY KEY) WITHOUT ROWID")
        except sqlite3.Error as exc:
            self.db.close()
            raise self.failed(exc) from exc
        self.pending: list[tuple[bytes]] = []
        self.last: str | None = None
        self.last_test = False
        self.readers = self.tests = 0

    @staticmethod
    def key(user: str) -> bytes:
        return user.encode("utf-8", "surrogatepass")

    def add(self, user: str) -> None:
        if user != self.last:  # a reader's records mostly come together
            self.last = user
            self.pending.append((self.key(user),))
            if len(self.pending) >= self.BATCH:
                self._insert("reader")

    def _insert(self, table: str) -> None:
        self.db.execute("BEGIN")
        self.db.executemany(f"INSERT OR IGNORE INTO {table} VALUES (?)", self.pending)
        self.db.execute("COMMIT")
        self.pending.clear()

    def split(self, test_size: float, seed: int) -> None:
        """Choose the test readers as ``test_readers`` would."""
        self._insert("reader")
        self.readers = self.db.execute("SELECT COUNT(*) FROM reader").fetchone()[0]
        ranks = array("i" if self.readers < 2**31 else "q", range(self.readers))
        random.Random(f"gravity-split:{seed}").shuffle(ranks)
        self.tests = _test_count(self.readers, test_size)
        chosen = bytearray(self.readers)
        for rank in ranks[: self.tests]:
            chosen[rank] = 1
        del ranks
        rank, after = 0, b""  # the sorted ids a page at a time, each query done before inserts
        while page := self.db.execute(
            "SELECT id FROM reader WHERE id > ? ORDER BY id LIMIT ?", (after, self.BATCH)
        ).fetchall():
            self.pending.extend((key,) for i, (key,) in enumerate(page, rank) if chosen[i])
            rank, after = rank + len(page), page[-1][0]
            self._insert("test")
        self.last = None

    def __contains__(self, user: object) -> bool:
        """Whether ``user`` is a test reader (after ``split``); never a non-text id (a file
        replaced after its check: the export refuses it after routing)."""
        if not isinstance(user, str):
            return False
        if user != self.last:
            found = self.db.execute("SELECT 1 FROM test WHERE id = ?", (self.key(user),))
            self.last, self.last_test = user, found.fetchone() is not None
        return self.last_test

    def __enter__(self) -> _ReaderIndex:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        self.db.close()
        if isinstance(exc, sqlite3.Error):
            raise self.failed(exc) from exc

    def failed(self, exc: sqlite3.Error) -> GravityError:
        """One line for an SQLite failure, with where to make room when the disk is full."""
        hint = ""
        if isinstance(exc, sqlite3.OperationalError):
            hint = "; set TMPDIR to a folder with room" if "full" in str(exc) else " (disk full?)"
        return GravityError(f"{self.path}: the export's index of readers failed: {exc}{hint}")


def split_by_user(
    rows: list[dict[str, Any]], test_size: float, seed: int
) -> dict[str, list[dict[str, Any]]]:
    """Seeded split of readers into train and test; every row follows its reader."""
    test_users = test_readers({r["user_id"] for r in rows}, test_size, seed)
    splits = {
        "train": [r for r in rows if r["user_id"] not in test_users],
        "test": [r for r in rows if r["user_id"] in test_users],
    }
    return {name: part for name, part in splits.items() if part}


class SplitStats:
    """A split's counts for the card, added record by record."""

    def __init__(self, readers: int | None = None) -> None:
        """``readers``: the split's reader count when known (then ids are not collected)."""
        self.pairs = 0
        self.readers = readers
        self.users: set[str] = set()
        self.items: set[Any] = set()
        self.by_country: Counter[str] = Counter()
        self.by_facet: Counter[str] = Counter()
        self.by_intent: Counter[str] = Counter()
        self.models: set[str] = set()
        self.tasks: set[tuple[str, str]] = set()

    def add(self, row: dict[str, Any]) -> None:
        self.pairs += 1
        if self.readers is None:
            self.users.add(row["user_id"])
        self.items.add(row.get("item_id"))
        self.by_country[row.get("country", "?")] += 1
        self.by_facet[row.get("facet", "?")] += 1
        self.by_intent.update(intent_counts([row]))
        self.models.add(row.get("generator_model", "?"))
        self.tasks.add((row.get("task") or "?", row.get("task_digest") or "?"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "users": len(self.users) if self.readers is None else self.readers,
            "items": len(self.items),
            "by_country": dict(sorted(self.by_country.items())),
            "by_facet": dict(sorted(self.by_facet.items())),
            "by_intent": dict(sorted(self.by_intent.items())),  # where an intent graph was used
        }


def dataset_card(run_dir: Path, splits: dict[str, SplitStats], license: str) -> str:
    """README.md for the dataset: YAML metadata, config, counts, per-country/facet stats."""
    config_path, summary_path = run_dir / "config.yaml", run_dir / "summary.json"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    models = sorted(set().union(*(part.models for part in splits.values())))
    tasks = sorted(set().union(*(part.tasks for part in splits.values())))
    task = (
        {"name": tasks[0][0], "digest": tasks[0][1]}
        if len(tasks) == 1
        else {"name": "mixed", "digest": ", ".join(f"{n}:{d}" for n, d in tasks)}
    )
    stats = {name: part.as_dict() for name, part in splits.items()}
    total = sum(part.pairs for part in splits.values())
    size = _size_category(total)
    meta = {
        "license": license,
        "task_categories": ["text-generation"],
        "tags": ["dpo", "preference", "personalization", "synthetic", "gravity"],
        "size_categories": [size],
        "pretty_name": "gravity personalized preference pairs",
        "gravity": {"task": task, "generation_models": models, "splits": stats},
    }
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).strip(),
        "---",
        "",
        "# gravity preference pairs",
        "",
        f"Synthetic, profile-grounded preference pairs for the task `{task['name']}` (task "
        f"digest {task['digest']}), made "
        "by `gravity generate` and exported by `gravity export`. Columns `prompt`, `chosen`, "
        "`rejected` follow TRL's conversational preference format; the rest is metadata "
        "(record/user/item ids, task and its digest, country, facet, scenario, rejected "
        "strategy, mode, models, "
        "template hashes, seed; with an intent graph, the intent of the reader's path to the "
        "book and the intent a rejected description was written for). Splits are by reader: "
        "no reader is in two splits.",
        "",
        "## Counts",
        "",
        "| split | pairs | readers | items |",
        "|---|---|---|---|",
    ]
    lines += _count_tables(stats, summary)
    lines += ["", "## Generation models", ""] + [f"- `{m}`" for m in models]
    lines += [
        "",
        "## Generation config",
        "",
        "```yaml",
        yaml.safe_dump(config, sort_keys=False).strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def _count_tables(stats: dict[str, dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    """The card's count rows: per split, the generation summary, per country, facet and intent."""
    lines = [
        f"| {name} | {st['pairs']} | {st['users']} | {st['items']} |" for name, st in stats.items()
    ]
    if summary:
        lines += [
            "",
            f"Generation: {summary.get('rows_in')} rows in = {summary.get('written')} written + "
            f"{summary.get('rejected')} rejected; rejects by reason: "
            f"{json.dumps(summary.get('rejects_by_reason', {}))}.",
        ]
    for key, title in (("by_country", "country"), ("by_facet", "facet"), ("by_intent", "intent")):
        keys = sorted({k for st in stats.values() for k in st[key]})
        if not keys:  # no intent graph was used
            continue
        lines += [
            "",
            f"## Pairs per {title}",
            "",
            "| " + title + " | " + " | ".join(stats) + " |",
            "|---|" + "---|" * len(stats),
        ]
        for k in keys:
            lines.append(
                f"| {k} | " + " | ".join(str(st[key].get(k, 0)) for st in stats.values()) + " |"
            )
    return lines


def _size_category(total: int) -> str:
    """The hub's size category of a dataset of ``total`` rows."""
    for limit, name in ((10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K")):
        if total < limit:
            return name
    return "100K<n<1M" if total < 10**6 else "1M<n<10M" if total < 10**7 else "n>10M"


class _Split:
    """One split's records on their way to a dataset: a JSONL file in a work folder, the
    split's columns (its first record's keys, as ``Dataset.from_list`` takes them) and, per
    column, a value that shows its type (its first non-empty one; a float over an int)."""

    def __init__(self, path: Path, readers: int) -> None:
        self.path = path
        self.file = path.open("w", encoding="utf-8")
        self.stats = SplitStats(readers)
        self.columns: tuple[str, ...] = ()
        self.typed: dict[str, Any] = {}

    def add(self, row: dict[str, Any]) -> None:
        if not self.columns:
            self.columns = tuple(row)
        for key in self.columns:
            value, known = row.get(key), self.typed.get(key)
            if _json_kind(known) in _VAGUE or (
                isinstance(value, float) and isinstance(known, int) and not isinstance(known, bool)
            ):
                self.typed[key] = value
        self.file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.stats.add(row)

    def dataset(self, name: str, cache: Path) -> Any:
        """The split as a ``datasets.Dataset`` written to Arrow files under ``cache``, its
        features those ``Dataset.from_list`` would infer from all its records."""
        from datasets import Dataset

        features = Dataset.from_list([{k: self.typed.get(k) for k in self.columns}]).features
        return Dataset.from_generator(
            _split_rows,
            gen_kwargs={"path": str(self.path), "columns": self.columns},
            features=features,
            cache_dir=str(cache),
            split=name,
        )


def _split_rows(path: str, columns: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            yield {k: row.get(k) for k in columns}


def _identity(path: Path) -> tuple[int, int, int, int]:
    """What tells one version of a file from another: device, inode, size, modification."""
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _route(
    path: Path, readers: int, tests: int, test_users: Container[str], work: Path
) -> dict[str, _Split]:
    """Every record of ``path`` (of ``readers`` readers, ``tests`` of them ``test_users``)
    into its split's file; the non-empty splits, train first."""
    counts = {"train": readers - tests, "test": tests}
    splits = {name: _Split(work / f"{name}.jsonl", counts[name]) for name in ("train", "test")}
    try:
        for row in iter_pairs(path):
            splits["test" if row["user_id"] in test_users else "train"].add(row)
    finally:
        for split in splits.values():
            split.file.close()
    return {name: split for name, split in splits.items() if split.stats.pairs}


def export_run(
    run_dir: str | Path,
    out: str | Path,
    fmt: str = "hf",
    test_size: float = 0.2,
    seed: int = 0,
    license: str = "apache-2.0",
    push_to_hub: str | None = None,
    private: bool = False,
) -> dict[str, Any]:
    """Export ``run_dir`` to ``out``; returns the per-split stats. Streams: records are read
    line by line, the readers are kept in an SQLite file in the system's temp folder (about 6
    bytes a reader in memory while the split is drawn) and each split is built in Arrow files on
    disk (a work folder beside ``out``, removed at the end), so memory stays nearly flat in the
    number of readers and pairs."""
    if fmt not in FORMATS:
        raise GravityError(f"unknown format '{fmt}'; valid: {', '.join(FORMATS)}")
    if not 0 <= test_size < 1:
        raise GravityError(f"--test-size: {test_size} is not in [0, 1)")
    run_dir, out = Path(run_dir), Path(out)
    settle_commit(run_dir)  # a finish a killed run left half done: completed first
    before = _identity(_pairs_path(run_dir))
    # the readers on disk (the system's temp folder, TMPDIR), not in memory; checked and split
    # before anything is written beside ``out``, so bad input leaves no folder behind
    _check_tmpdir()
    with (
        tempfile.TemporaryDirectory(prefix="gravity-export-") as scratch,
        _ReaderIndex(Path(scratch) / "readers.sqlite") as index,
    ):
        path = _scan(run_dir, index.add)
        index.split(test_size, seed)
        return _write(run_dir, path, before, index, out, fmt, license, push_to_hub, private)


def _check_tmpdir() -> None:
    """Refuse a ``TMPDIR`` that is not a writable folder, where Python would quietly use
    another temp folder than the one the user chose for room."""
    chosen = os.environ.get("TMPDIR")
    if chosen and not (os.path.isdir(chosen) and os.access(chosen, os.W_OK | os.X_OK)):
        raise GravityError(
            f"TMPDIR={chosen}: not a writable folder (export keeps its index of readers there)"
        )


def _write(
    run_dir: Path,
    path: Path,
    before: tuple[int, int, int, int],
    index: _ReaderIndex,
    out: Path,
    fmt: str,
    license: str,
    push_to_hub: str | None,
    private: bool,
) -> dict[str, Any]:
    """The second half of ``export_run``: route the checked records into their splits, build
    the dataset aside and swap it into ``out``."""
    from datasets import DatasetDict

    out.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_dirs(out)  # what a killed export of ``out`` left
    work = temp_dir(out.parent, f".{out.name}.work-")
    tmp = temp_dir(out.parent, f".{out.name}.tmp-")
    changed = GravityError(
        f"{path}: changed while it was exported (a run writing to {run_dir}?); export again "
        "when it has finished"
    )
    try:
        try:
            splits = _route(path, index.readers, index.tests, index, work)
        except (KeyError, TypeError, ValueError, AttributeError):
            if _identity(path) != before:  # records that were never checked
                raise changed from None
            raise
        if _identity(path) != before:  # checked once, read twice: the same file both times
            raise changed
        dd = DatasetDict({name: s.dataset(name, work / "cache") for name, s in splits.items()})
        _save(dd, fmt, tmp)
        card = dataset_card(run_dir, {name: s.stats for name, s in splits.items()}, license)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        swap_dir_into_place(tmp, out)
        if push_to_hub:
            push(dd, out / "README.md", push_to_hub, private)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return {name: s.stats.as_dict() for name, s in splits.items()}


def _save(dd: Any, fmt: str, tmp: Path) -> None:
    """Write the splits of ``dd`` into the folder ``tmp`` in format ``fmt``."""
    if fmt == "hf":
        dd.save_to_disk(str(tmp / "dataset"))
        for item in (tmp / "dataset").iterdir():
            os.replace(item, tmp / item.name)
        (tmp / "dataset").rmdir()
        return
    for name, ds in dd.items():
        if fmt == "parquet":
            ds.to_parquet(str(tmp / f"{name}.parquet"))
        else:
            ds.to_json(str(tmp / f"{name}.jsonl"), lines=True, force_ascii=False)


def push(dd: Any, card: Path, repo: str, private: bool) -> None:
    """Upload the dataset and its card; the token comes from ``HF_TOKEN`` only."""
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise GravityError("--push-to-hub needs a token in the HF_TOKEN environment variable")
    dd.push_to_hub(repo, private=private, token=token)
    from huggingface_hub import HfApi

    HfApi(token=token).upload_file(
        path_or_fileobj=str(card), path_in_repo="README.md", repo_id=repo, repo_type="dataset"
    )
