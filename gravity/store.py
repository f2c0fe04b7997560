"""The durable result store every stage writes through: SQLite in WAL mode.

- ``completions``: one row per LLM completion, keyed by a hash of what changes the result
  (backend kind, model id and revision, messages, sampling params incl. seed); never batch size,
  concurrency or memory knobs.

Stages build their records from completions with deterministic record ids, so an
interrupted-then-resumed run ends with exactly the records of an uninterrupted one.

Writes are committed per batch: a SIGKILL loses at most the batch in flight. Several processes may
share one store: SQLite serialises writers (``busy_timeout``) and ``INSERT OR IGNORE`` makes a
write of an existing key a no-op.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from gravity.errors import GravityError

SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    request TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    finish_reason TEXT NOT NULL,
    created REAL NOT NULL
);
"""


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def hash_key(value: Any) -> str:
    """sha256 of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


class Store:
    """A SQLite file; one connection per thread. Use as a context manager or call ``close()``."""

    def __init__(self, path: str | Path, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=self.timeout_s)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.DatabaseError as exc:
                raise GravityError(f"{self.path}: not a usable gravity store: {exc}") from None
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, rows: Sequence[tuple]) -> None:
        if not rows:
            return
        conn = self._conn()
        try:
            with conn:
                conn.executemany(sql, rows)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise GravityError(
                    f"{self.path}: store is locked by another process for over "
                    f"{self.timeout_s:.0f}s; try again when it finishes"
                ) from None
            raise

    # completions -------------------------------------------------------------------------
    def get_completions(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Stored completions among ``keys``."""
        keys = list(keys)
        found: dict[str, dict[str, Any]] = {}
        conn = self._conn()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                "SELECT key, text, prompt_tokens, completion_tokens, finish_reason "
                f"FROM completions WHERE key IN ({marks})",
                chunk,
            ):
                found[row[0]] = {
                    "text": row[1],
                    "prompt_tokens": row[2],
                    "completion_tokens": row[3],
                    "finish_reason": row[4],
                }
        return found

    def put_completions(self, rows: Sequence[tuple[str, str, str, dict[str, Any]]]) -> None:
        """Write (key, fingerprint json, request json, completion dict) rows in one transaction."""
        now = time.time()
        self._write(
            "INSERT OR IGNORE INTO completions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    key,
                    fp,
                    req,
                    c["text"],
                    c["prompt_tokens"],
                    c["completion_tokens"],
                    c["finish_reason"],
                    now,
                )
                for key, fp, req, c in rows
            ],
        )

    def count_completions(self) -> int:
        """How many completions are stored."""
        return self._conn().execute("SELECT COUNT(*) FROM completions").fetchone()[0]
