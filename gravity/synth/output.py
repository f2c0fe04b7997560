"""What synthesis keeps across its chunks of readers, with memory flat in their number: the
counts of the summary (``Tally``), the index of kept pairs for the duplicate check
(``PairIndex``, on disk), and the run folder's files, appended chunk by chunk (``RunWriter``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from gravity.io import (
    COMMIT_NAME,
    AtomicAppender,
    finish_commit,
    write_commit_record,
    write_temp,
)
from gravity.profiles.models import UserProfile
from gravity.profiles.stream import by_reader_key, reader_key
from gravity.synth.config import GenerateConfig

if TYPE_CHECKING:
    from gravity.llm.engine import Engine

RUN_FILES = ("pairs.jsonl", "rejects.jsonl")
END_FILES = ("config.yaml", "summary.json")  # written whole when the run completes


def parse_shard(shard: str | None) -> tuple[int, int] | None:
    """``"I/N"`` -> (I, N); None for no sharding."""
    if shard is None:
        return None
    index, count = shard.split("/")
    return int(index), int(count)


def in_shard(reader_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether the reader belongs to shard (I, N): a hash of its id, modulo N, is I (stable
    across processes, machines and Python versions)."""
    if shard is None:
        return True
    digest = hashlib.sha256(reader_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shard[1] == shard[0]


def reader_chunks(
    profiles: Iterable[UserProfile], size: int, shard: tuple[int, int] | None = None
) -> Iterator[list[UserProfile]]:
    """The readers of ``shard`` among ``profiles`` (all without one) in ``reader_key`` order,
    in chunks of about ``size``: a chunk never ends between two readers whose keys nest (ids
    like ``u1`` and ``u1:x``, whose records would interleave), so the chunks' records, each
    chunk's sorted, are in record-id order."""
    ordered = profiles
    if not getattr(profiles, "sorted_by_key", False):
        ordered = by_reader_key(list(profiles))
    chunk: list[UserProfile] = []
    family: str | None = None
    for profile in ordered:
        if not in_shard(profile.id, shard):
            continue
        key = reader_key(profile.id)
        if family is None or not key.startswith(family):
            if len(chunk) >= size:
                yield chunk
                chunk = []
            family = key
        chunk.append(profile)
    if chunk:
        yield chunk


class PairIndex:
    """The pairs kept so far, by a hash of their texts -> record id: a private temporary
    SQLite database (pages beyond its small cache go to disk)."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect("")
        self.conn.execute("CREATE TABLE kept (h BLOB PRIMARY KEY, record_id TEXT NOT NULL)")

    def first(self, chosen: str, rejected: str, record_id: str) -> str | None:
        """The record id that already holds these texts, or None (and ``record_id`` now does)."""
        digest = hashlib.sha256(json.dumps([chosen, rejected]).encode("utf-8")).digest()
        row = self.conn.execute("SELECT record_id FROM kept WHERE h = ?", (digest,)).fetchone()
        if row is not None:
            return row[0]
        self.conn.execute("INSERT INTO kept VALUES (?, ?)", (digest, record_id))
        return None

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


class Tally:
    """The summary's counts, added chunk by chunk: rows in = written + rejected."""

    def __init__(self) -> None:
        self.rows_in = 0
        self.written = 0
        self.reasons: Counter[str] = Counter()
        self.by: dict[str, dict[str, Counter[str]]] = {
            "facet": defaultdict(Counter),
            "country": defaultdict(Counter),
        }
        self.intents: Counter[str] = Counter()
        self.sources: Counter[str] = Counter()  # readers by where their books came from

    def add(
        self, rows_in: int, records: list[dict[str, Any]], rejects: list[dict[str, Any]]
    ) -> None:
        self.rows_in += rows_in
        self.written += len(records)
        self.reasons.update(r["reason"] for r in rejects)
        for rows, status in ((records, "written"), (rejects, "rejected")):
            for rec in rows:
                self.by["facet"][rec["facet"]][status] += 1
                self.by["country"][rec["country"]][status] += 1
        self.intents.update(
            r["intent"] for r in records if r.get("facet") == "intents" and r.get("intent")
        )

    def summary(
        self, cfg: GenerateConfig, engine: Engine, trimmed: int, wall: float
    ) -> dict[str, Any]:
        return self.summary_of(
            cfg, dict(engine.tokens), engine.calls, engine.fingerprint, trimmed, wall
        )

    def summary_of(
        self,
        cfg: GenerateConfig,
        tokens: dict[str, int],
        calls: int,
        model: dict[str, Any],
        trimmed: int,
        wall: float,
    ) -> dict[str, Any]:
        """The run's summary.json (its counts checked: rows in = written + rejected)."""
        rejected = sum(self.reasons.values())
        summary = {
            "mode": cfg.mode,
            "rows_in": self.rows_in,
            "written": self.written,
            "rejected": rejected,
            "rejects_by_reason": dict(sorted(self.reasons.items())),
            # Requests the backend failed (out of retries): not a verdict on the text, and
            # never stored, so a rerun asks them again.
            "backend_errors": sum(
                n for k, n in self.reasons.items() if k.endswith("backend_error")
            ),
            "by_facet": {k: dict(v) for k, v in sorted(self.by["facet"].items())},
            "by_country": {k: dict(v) for k, v in sorted(self.by["country"].items())},
            "outputs_trimmed_at_sentence": trimmed,
            "tokens_generated": tokens,
            "llm_calls": calls,
            "wall_time_s": round(wall, 2),
            "model": model,
        }
        if self.rows_in != self.written + rejected:  # never lose a row
            raise RuntimeError(f"count mismatch: {summary}")
        summary["item_selection"] = dict(sorted(self.sources.items()))
        return summary


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


class RunWriter:
    """A run folder's pairs.jsonl and rejects.jsonl appended chunk by chunk, then, when the run
    is complete, renamed into place with config.yaml and summary.json as one step: a commit
    record listing the four renames is written first, and a finish killed between its renames
    is completed by the next writer (or reader: ``gravity.io.settle_commit``) of the folder. A
    run killed before its finish leaves the previous files as they were, and temp files that
    the next writer removes. Create it with the folder's lock held."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        finish_commit(self.out_dir)  # a finish a killed run had decided on: completed
        for name in (*RUN_FILES, *END_FILES, COMMIT_NAME):
            AtomicAppender.remove_stale(self.out_dir / name)
        self.files = [AtomicAppender(self.out_dir / name) for name in RUN_FILES]
        self._temps: list[str] = []  # the end files' temps, until the finish is decided
        self._decided = False

    def write(self, records: list[dict[str, Any]], rejects: list[dict[str, Any]]) -> None:
        for file, rows in zip(self.files, (records, rejects)):
            file.write(jsonl(rows))

    def commit(self, cfg: GenerateConfig, summary: dict[str, Any]) -> None:
        config = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
        self._temps.append(write_temp(self.out_dir / "config.yaml", config.encode("utf-8")))
        renames = [(self._temps[-1], "config.yaml")]
        renames += [(file.finish(), file.path.name) for file in self.files]
        text = json.dumps(summary, indent=2) + "\n"
        self._temps.append(write_temp(self.out_dir / "summary.json", text.encode("utf-8")))
        renames.append((self._temps[-1], "summary.json"))
        write_commit_record(self.out_dir, renames)
        self._decided = True  # from here on the finish is completed, never undone
        finish_commit(self.out_dir)

    def discard(self) -> None:
        """Drop the temp files (the previous outputs stay), unless the finish was decided: then
        they are the new outputs, which the next writer or reader of the folder puts in place."""
        if self._decided:
            return
        for file in self.files:
            file.discard()
        for tmp in self._temps:
            Path(tmp).unlink(missing_ok=True)


class InputDigest:
    """Digests of what a run read: every reader (all of them, a shard's or not), the catalog
    and the intent graph file. ``gravity merge`` refuses shards whose inputs differ: their
    configs can match while their profile files or catalog contents do not."""

    def __init__(self, catalog: list[Any], intent_graph: Any = None) -> None:
        import hashlib

        self._readers = hashlib.sha256()
        self.count = 0
        books = hashlib.sha256()
        for item in catalog:
            books.update(item.model_dump_json().encode() + b"\n")
        self._catalog = books.hexdigest()[:16]
        self._graph = _file_digest(intent_graph)

    def readers(self, profiles: Any) -> Any:
        """``profiles``, passed through while their digest is taken, still marked sorted by
        reader key if they were (``reader_chunks`` would otherwise hold them all to sort)."""
        return _Digesting(self, profiles)

    def _take(self, profile: Any) -> Any:
        self._readers.update(profile.model_dump_json().encode() + b"\n")
        self.count += 1
        return profile

    def digests(self) -> dict[str, Any]:
        return {
            "readers": self._readers.hexdigest()[:16],
            "reader_count": self.count,
            "catalog": self._catalog,
            "intent_graph": self._graph,
        }


class _Digesting:
    """An iterable over ``profiles`` that feeds each to the digest as it passes."""

    def __init__(self, digest: InputDigest, profiles: Any) -> None:
        self.digest = digest
        self.profiles = profiles
        self.sorted_by_key = getattr(profiles, "sorted_by_key", False)

    def __iter__(self) -> Any:
        return (self.digest._take(p) for p in self.profiles)


def _file_digest(path: Any) -> str | None:
    """sha256 (16 hex) of a file, or of a folder's files by relative name; None if absent."""
    import hashlib
    from pathlib import Path

    if path is None or not Path(path).exists():
        return None
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(root) if root.is_dir() else f.name).encode() + b"\0")
        with f.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
