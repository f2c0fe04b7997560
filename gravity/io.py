"""Shared file I/O, free of stage imports: the one guarded reading layer every user file goes
through, parsers for JSON, JSONL, YAML, CSV and parquet, validation into pydantic models, and
atomic writes that keep the user's umask.

Reading a user file can fail in more ways than any list of exceptions names (syntax, encoding,
size, nesting depth, YAML alias bombs, numbers too large to print, whatever a parser raises).
``reading(path)`` turns every failure inside it into one ``InputError`` line naming the file, so
no input can produce a traceback; the parsers below add the line and the reason where they can.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import socket
import stat
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from gravity.errors import GravityError, InputError, Problem, validation_problems

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 512 * 2**20
"""Largest user file read into memory."""
MAX_LINE_BYTES = 16 * 2**20
"""Longest line of a JSON Lines file read line by line (one line is held in memory at a time);
the environment variable ``GRAVITY_MAX_LINE_BYTES`` sets another."""
LINE_LIMIT_ENV = "GRAVITY_MAX_LINE_BYTES"
MAX_DEPTH = 32
"""Deepest nesting of lists and mappings accepted in one record or document."""
MAX_INT = 2**63
"""Largest integer magnitude accepted (larger ones cannot be stored, hashed or printed safely)."""
MIN_NODE_BUDGET = 100_000
"""Values one document may expand to at least (YAML aliases count once per use)."""

M = TypeVar("M", bound=BaseModel)

# libyaml's loader when PyYAML has it: ~1000x faster on hostile input (the pure-Python scanner
# takes seconds on 50 kB of '[') and it limits nesting itself.
YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def file_error(
    path: Any, reason: str, line: int | None = None, field: str | None = None
) -> InputError:
    """An ``InputError`` with one problem in ``path``."""
    return InputError([Problem(path, reason, field, line)])


def describe(exc: BaseException) -> tuple[int | None, str, str]:
    """(line or None, field, one-line reason) for any exception raised while reading a file;
    the field is ``<json>``, ``<yaml>``, ``<csv>`` for syntax errors, else ``<file>``."""
    if isinstance(exc, json.JSONDecodeError):
        return exc.lineno, "<json>", f"{exc.msg} (column {exc.colno})"
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        reason = exc.problem or exc.context or "syntax error"
        return (mark.line + 1 if mark else None), "<yaml>", f"invalid YAML: {reason}"
    if isinstance(exc, yaml.YAMLError):
        return None, "<yaml>", f"invalid YAML: {exc}"
    if isinstance(exc, csv.Error):
        return None, "<csv>", f"invalid CSV: {exc}"
    if isinstance(exc, RecursionError):
        reason = "nested too deeply to read"
    elif isinstance(exc, MemoryError):
        reason = "too large to load into memory"
    elif isinstance(exc, UnicodeDecodeError):
        bad = exc.object[exc.start : exc.start + 1]
        byte = f" 0x{bad[0]:02x}" if bad else ""
        reason = f"not UTF-8 text (invalid byte{byte} at offset {exc.start})"
    elif isinstance(exc, IsADirectoryError):
        reason = "cannot read: is a folder, not a file"
    elif isinstance(exc, FileNotFoundError):
        reason = "cannot read: no such file"
    elif isinstance(exc, OSError):
        reason = f"cannot read: {exc.strerror or exc}"
    else:
        text = str(exc).strip().splitlines()
        reason = f"cannot read ({type(exc).__name__}): {text[0] if text else 'no detail'}"
    return None, "<file>", reason


@contextmanager
def reading(path: Any) -> Iterator[None]:
    """Any failure inside becomes one ``InputError`` naming ``path`` (a ``GravityError`` passes
    through as it is: it already names what is wrong)."""
    try:
        yield
    except GravityError:
        raise
    except Exception as exc:
        log.debug("reading %s failed", path, exc_info=True)
        line, field, reason = describe(exc)
        raise file_error(path, reason, line, field) from None


def read_text(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> str:
    """A user's text file: UTF-8 (a byte-order mark is dropped), no NUL bytes, size-bounded."""
    path = Path(path)
    with reading(path):
        if path.is_dir():
            raise file_error(path, "cannot read: is a folder, not a file", field="<file>")
        size = path.stat().st_size
        if size > max_bytes:
            reason = f"file is {size:,} bytes; the limit is {max_bytes:,}"
            raise file_error(path, reason, field="<file>")
        text = path.read_bytes().decode("utf-8-sig")
        nul = text.find("\x00")
        if nul >= 0:
            line = text.count("\n", 0, nul) + 1
            raise file_error(path, "holds a NUL byte: not a text file", line, "<file>")
        return text


def _check_scalar(value: Any) -> str | None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "text holds an unpaired surrogate (not valid Unicode)"
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int):
        if abs(value) >= MAX_INT:
            return "number too large"
    elif isinstance(value, float) and not math.isfinite(value):
        return f"number must be finite, got {value}"
    return None


def _loc_name(loc: tuple[Any, ...] | None) -> str | None:
    parts: list[str] = []
    while loc is not None:  # a linked list (parent, key): built only for an error
        loc, key = loc
        parts.append(str(key))
    return ".".join(reversed(parts)) or None


def check_tree(data: Any, path: Any, line: int | None = None, budget: int | None = None) -> None:
    """Refuse parsed data no later stage can handle: nesting deeper than ``MAX_DEPTH``,
    self-referencing YAML aliases, alias expansion past ``budget`` values, non-finite or huge
    numbers, text that is not valid Unicode. Raises ``InputError`` naming the field."""
    budget = max(MIN_NODE_BUDGET, budget or 0)
    seen = 0
    on_path: set[int] = set()
    containers = (dict, list, tuple, set, frozenset)
    # (value, location as a (parent, key) linked list, depth, leaving?)
    stack: list[tuple[Any, Any, int, bool]] = [(data, None, 0, False)]
    while stack:
        value, loc, depth, leaving = stack.pop()
        if leaving:
            on_path.discard(id(value))
            continue
        seen += 1
        if seen > budget:
            raise file_error(path, f"expands to more than {budget:,} values (YAML aliases?)", line)
        if isinstance(value, containers):
            if id(value) in on_path:
                reason = "refers to itself (recursive YAML alias)"
                raise file_error(path, reason, line, _loc_name(loc))
            if depth >= MAX_DEPTH:
                reason = f"nested deeper than {MAX_DEPTH} levels"
                raise file_error(path, reason, line, _loc_name(loc))
            on_path.add(id(value))
            stack.append((value, loc, depth, True))
            if isinstance(value, dict):
                for key, child in value.items():
                    problem = _check_scalar(key)
                    if problem:
                        raise file_error(path, f"key: {problem}", line, _loc_name(loc))
                    stack.append((child, (loc, key), depth + 1, False))
            else:
                stack.extend((child, (loc, i), depth + 1, False) for i, child in enumerate(value))
        elif not isinstance(value, (bool, type(None))):
            problem = _check_scalar(value)
            if problem:
                raise file_error(path, problem, line, _loc_name(loc))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(text: str, path: Any, line: int | None = None) -> Any:
    """One JSON value, checked by ``check_tree`` (NaN and Infinity are refused)."""
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        at = exc.lineno if line is None else line
        raise file_error(path, f"{exc.msg} (column {exc.colno})", at, "<json>") from None
    except RecursionError:
        raise file_error(path, "nested too deeply to read", line, "<json>") from None
    except ValueError as exc:  # NaN/Infinity, integers with too many digits
        raise file_error(path, str(exc), line, "<json>") from None
    check_tree(data, path, line, budget=2 * len(text))
    return data


@dataclass
class Record:
    """One record of a file: its first line, the parsed data (or the problem that stopped it),
    and for YAML the node, to find the line of a field."""

    line: int
    data: Any = None
    problem: InputError | None = None
    node: yaml.Node | None = None


def jsonl_records(text: str, path: Any) -> Iterator[Record]:
    """The records of a JSON Lines text; a bad line yields a ``Record`` with its problem, so a
    caller may report every bad line, not only the first."""
    # Split on "\n" only: str.splitlines() would also split inside strings at U+2028 and others.
    for number, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        if not raw.strip():
            continue
        try:
            yield Record(number, parse_json(raw, path, line=number))
        except InputError as exc:
            yield Record(number, problem=exc)


def line_limit() -> int:
    """The longest line a JSON Lines file may hold: ``GRAVITY_MAX_LINE_BYTES`` if set, else
    ``MAX_LINE_BYTES`` (16 MiB)."""
    value = os.environ.get(LINE_LIMIT_ENV)
    if value is None or not value.strip():
        return MAX_LINE_BYTES
    try:
        limit = int(value.strip().replace("_", ""))
    except ValueError:
        limit = 0
    if limit <= 0:
        raise GravityError(f"{LINE_LIMIT_ENV}: {value!r} is not a number of bytes above 0")
    return limit


def jsonl_file_records(path: str | Path, max_line_bytes: int | None = None) -> Iterator[Record]:
    """The records of a JSON Lines file, read line by line (no limit on the file's size, only
    on a line's: ``max_line_bytes``, by default ``line_limit()``): flat memory for files of
    any length. Encoding and NUL problems are the ``InputError`` of ``read_text``, with the
    line."""
    path = Path(path)
    explicit = max_line_bytes is not None
    limit = max_line_bytes if max_line_bytes is not None else line_limit()
    with reading(path):
        if path.is_dir():
            raise file_error(path, "cannot read: is a folder, not a file", field="<file>")
        with path.open("rb") as f:
            for number, raw in enumerate(_lines(f, limit, path, explicit), start=1):
                if number == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                try:
                    text = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
                except UnicodeDecodeError as exc:
                    reason = f"not UTF-8 text (invalid byte 0x{raw[exc.start]:02x})"
                    raise file_error(path, reason, number, "<file>") from None
                if "\x00" in text:
                    raise file_error(path, "holds a NUL byte: not a text file", number, "<file>")
                if not text.strip():
                    continue
                try:
                    yield Record(number, parse_json(text, path, line=number))
                except InputError as exc:
                    yield Record(number, problem=exc)


def _lines(f: Any, max_bytes: int, path: Path, explicit: bool = True) -> Iterator[bytes]:
    """Lines of a binary file split on b"\\n" only, each at most ``max_bytes`` (read with that
    bound: a longer line is never held whole)."""
    for number, raw in enumerate(iter(lambda: f.readline(max_bytes + 1), b""), start=1):
        if len(raw) > max_bytes:
            reason = f"line is over {max_bytes:,} bytes"
            if not explicit:
                reason += f", the limit of one line ({LINE_LIMIT_ENV})"
            raise file_error(path, reason, number, "<file>")
        yield raw


def yaml_documents(text: str, path: Any) -> list[Record]:
    """Every document of a YAML (or JSON) text, with its node for field line numbers."""
    with reading(path):
        data = list(yaml.load_all(text, Loader=YAML_LOADER))
        nodes = list(yaml.compose_all(text, Loader=YAML_LOADER))
    records = []
    for index, doc in enumerate(data):
        node = nodes[index] if index < len(nodes) else None
        line = node.start_mark.line + 1 if node is not None else 1
        check_tree(doc, path, line, budget=2 * len(text))
        records.append(Record(line, doc, node=node))
    return records


def node_line(node: yaml.Node | None, loc: tuple[Any, ...], default: int | None) -> int | None:
    """The line of the field at ``loc`` below a YAML ``node`` (the closest known one)."""
    line = default
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            pairs = [(k, v) for k, v in node.value if str(getattr(k, "value", None)) == str(key)]
            if not pairs:
                return line
            key_node, node = pairs[0]
            if node is None:
                return key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def csv_records(text: str, path: Any) -> tuple[list[str], list[Record]]:
    """The header and the rows of a CSV text (as mappings), each with its first line; a row
    with another number of columns than the header is a problem of that row."""
    rows: list[Record] = []
    with reading(path):
        reader = csv.reader(io.StringIO(text, newline=""))
        header: list[str] | None = None
        start = 1
        for row in reader:
            line, start = start, reader.line_num + 1
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = [name.strip() for name in row]
                dupes = sorted(n for n, count in Counter(header).items() if count > 1)
                if dupes:
                    raise file_error(path, f"duplicate column(s) {', '.join(dupes)}", line)
                continue
            if len(row) != len(header):
                reason = f"row has {len(row)} columns, the header has {len(header)}" + (
                    " (an unquoted comma?)" if len(row) > len(header) else ""
                )
                rows.append(Record(line, problem=file_error(path, reason, line)))
                continue
            rows.append(Record(line, dict(zip(header, row))))
    return header or [], rows


def parquet_rows(path: Path, max_bytes: int = MAX_FILE_BYTES) -> list[Record]:
    """The rows of a parquet file as mappings (row numbers from 1), size-bounded uncompressed."""
    with reading(path):
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path).metadata
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if size > max_bytes:
            raise file_error(path, f"holds {size:,} bytes of data; the limit is {max_bytes:,}")
        rows = pq.read_table(path).to_pylist()
        records = []
        for number, row in enumerate(rows, start=1):
            check_tree(row, path, number)
            records.append(Record(number, row))
        return records


def validate(
    model: type[M],
    data: Any,
    path: Any,
    line: int | None = None,
    node: yaml.Node | None = None,
    empty: str = "<file>",
) -> M:
    """``model`` validated from ``data``; every error becomes a line naming the file and field
    (the closest valid name is suggested for an unknown field)."""
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "nothing"
        raise file_error(path, f"expected a mapping of {model.__name__} fields, got {kind}", line)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(
            validation_problems(
                exc, path, model, line_of=lambda loc: node_line(node, loc, line), empty=empty
            )
        ) from None


def load_yaml_model(path: str | Path, model: type[M]) -> M:
    """Validate a YAML (or JSON) file holding one mapping into ``model``; errors name the file,
    the line and the field."""
    path = Path(path)
    with reading(path):
        docs = [d for d in yaml_documents(read_text(path), path) if d.data is not None]
        if len(docs) > 1:
            raise file_error(path, "expected one YAML document, found several", docs[1].line)
        data = docs[0].data if docs else {}
        if not isinstance(data, dict):
            reason = f"expected a mapping of config fields, got {type(data).__name__}"
            raise file_error(path, reason, None, "<file>")
        return validate(model, data, path)


# --- writing -------------------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0o022)  # read it (no getter exists), then put it back at once
    os.umask(mask)
    return mask


def owner_tag() -> str:
    """``<pid>-<host>`` of this process, put in the names of the temp files and folders it makes
    so that a later process can tell a killed run's leftovers (``remove_dead``) from a live
    one's."""
    return f"{os.getpid()}-{_host_tag()}"


def _host_tag() -> str:
    """The host, its boot and this process's pid namespace: a pid means the same process only
    where all three match (two containers can share a hostname and a folder, not their pids)."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):  # not Linux: the hostname alone
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:8]


_OWNED = re.compile(r"(\d+)-([0-9a-f]{8})-")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: alive
        return True
    return True


def _dead(parent: Path, prefix: str) -> list[Path]:
    """The entries of ``parent`` named ``prefix`` + ``owner_tag()`` + ``-...`` whose process (on
    this host, boot and pid namespace) is no longer alive."""
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return []
    host = _host_tag()
    dead = []
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        match = _OWNED.match(entry.name, len(prefix))
        if match is None or match.group(2) != host or _alive(int(match.group(1))):
            continue
        dead.append(entry)
    return dead


def remove_dead(parent: Path, prefix: str) -> list[Path]:
    """Remove the entries of ``parent`` named ``prefix`` + ``owner_tag()`` + ``-...`` whose process
    (on this host) is no longer alive: what a killed run left. Another live process's entries,
    another host's (or container's) and names of any other form are kept. Returns what was
    removed."""
    removed = _dead(parent, prefix)
    for entry in removed:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    if removed:
        log.info("removed %d leftover(s) of killed runs in %s", len(removed), parent)
    return removed


def _temp_file(path: Path) -> tuple[int, str]:
    """A new temp file beside ``path`` (its fd and name), with the mode a plain
    ``open(path, "w")`` would give ``path``: the existing file's, or 0666 less the umask (a temp
    file alone would be 0600). Named by its process (``owner_tag``)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            mode = 0o666 & ~_umask()
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.{owner_tag()}-", suffix=".tmp"
        )
    except OSError as exc:  # an output the user named that cannot be: one line, no traceback
        raise GravityError(f"{path}: cannot write: {exc.strerror or exc}") from None
    os.fchmod(fd, mode)
    return fd, tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file and rename: never half-written.

    The file gets the mode a plain ``open(path, "w")`` would give it (see ``_temp_file``).
    """
    tmp = write_temp(Path(path), data, sync=False)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_temp(path: Path, data: bytes, sync: bool = True) -> str:
    """``data`` written (and, with ``sync``, flushed to disk) to a new temp file beside
    ``path``; its name, for the caller to rename into place."""
    fd, tmp = _temp_file(Path(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


class AtomicAppender:
    """A file written by appending (flat memory) that appears at ``path`` only when complete:
    lines go to a temp file beside it, renamed into place by ``commit()``. A killed writer
    leaves a ``.<name>.*.tmp`` file that no reader takes for the output (``remove_stale``
    deletes it); a failed one leaves nothing."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        fd, self.tmp = _temp_file(self.path)
        self.file = os.fdopen(fd, "w", encoding="utf-8", newline="")

    def write(self, text: str) -> None:
        self.file.write(text)

    def finish(self) -> str:
        """Flush, sync and close the temp file; its name (to rename into place)."""
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
        return self.tmp

    def commit(self) -> None:
        """Flush and rename the finished file into place."""
        os.replace(self.finish(), self.path)

    def discard(self) -> None:
        """Drop the temp file (the output keeps its previous content, if any)."""
        self.file.close()
        Path(self.tmp).unlink(missing_ok=True)

    @staticmethod
    def remove_stale(path: Path) -> None:
        """Delete temp files a killed writer of ``path`` left behind."""
        for tmp in Path(path).parent.glob(f".{Path(path).name}.*.tmp"):
            tmp.unlink(missing_ok=True)


COMMIT_NAME = ".gravity.commit.json"
"""A folder's record of a finish in progress: the temp files to rename into place, in order."""


def write_commit_record(folder: Path, renames: list[tuple[str, str]]) -> None:
    """Record (atomically) that the finished temp files of ``renames`` ((temp name, final
    name), both in ``folder``) are to be renamed into place: from here on the finish is
    decided, and ``finish_commit`` completes it, now or, after a kill, in the next process."""
    plan = {"renames": [[Path(tmp).name, name] for tmp, name in renames]}
    atomic_write_text(Path(folder) / COMMIT_NAME, json.dumps(plan) + "\n")


def finish_commit(folder: Path) -> bool:
    """Complete the finish ``folder``'s commit record describes, if there is one (rename each
    temp file still there into place, then drop the record): a finish is all or nothing, even
    when a process was killed between its renames. Returns whether there was one. Call it with
    the folder's lock held."""
    path = Path(folder) / COMMIT_NAME
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
        renames = [(str(tmp), str(name)) for tmp, name in plan["renames"]]
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GravityError(
            f"{path}: not a commit record gravity wrote ({type(exc).__name__}); remove it and "
            "rerun the command that writes this folder"
        ) from None
    for tmp, name in renames:
        if Path(tmp).name != tmp or Path(name).name != name:
            raise GravityError(f"{path}: names a file outside its folder: {tmp} -> {name}")
        source = Path(folder) / tmp
        if source.exists():  # else renamed before the kill
            os.replace(source, Path(folder) / name)
    path.unlink()
    return True


def settle_commit(folder: Path) -> None:
    """Before reading a run folder: complete a finish a killed process left half done (under
    the folder's lock; an error naming the holder if a live process is writing it)."""
    if (Path(folder) / COMMIT_NAME).exists():
        from gravity.lock import folder_lock

        with folder_lock(Path(folder), "run folder"):
            finish_commit(Path(folder))


def temp_dir(parent: Path, prefix: str) -> Path:
    """A new folder in ``parent`` to build an output in before it is renamed into place, with
    the mode ``mkdir`` would give it (0777 less the umask; ``tempfile.mkdtemp`` gives 0700).
    Named by its process (``owner_tag``): ``remove_dead_dirs`` removes it if that process is
    killed."""
    path = Path(tempfile.mkdtemp(dir=parent, prefix=f"{prefix}{owner_tag()}-"))
    path.chmod(0o777 & ~_umask())
    return path


OUTPUT_TEMPS = ("work", "tmp", "old")
"""The kinds of folders built beside an output folder ``out``: ``.<out>.<kind>-<owner>-...``."""


def remove_dead_dirs(out: Path) -> list[Path]:
    """Remove the work, temp and old folders beside the output folder ``out`` that a killed
    process made (``remove_dead``); a live process's are kept."""
    out = Path(out)
    if not out.exists():
        # A swap killed between its two renames: the previous output is back in place (the new
        # one, perhaps unfinished, is not trusted) before the leftovers go.
        olds = _dead(out.parent, f".{out.name}.old-")
        if olds:
            os.replace(max(olds, key=lambda p: p.stat().st_mtime_ns), out)
            log.warning("%s: restored the previous output that a killed swap had moved aside", out)
    return [p for kind in OUTPUT_TEMPS for p in remove_dead(out.parent, f".{out.name}.{kind}-")]


def swap_dir_into_place(tmp: Path, out: Path) -> None:
    """Replace folder ``out`` by the finished folder ``tmp`` (same parent), removing the old one."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{owner_tag()}-{uuid.uuid4().hex[:8]}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, with the user's umask."""
    atomic_write_bytes(path, text.encode("utf-8"))


def read_parquet(path: Path, columns: list[str]) -> Any:
    """The ``columns`` of the parquet file ``path`` (a pyarrow Table); a file that cannot be read
    or lacks a column is a ``GravityError`` naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise GravityError(f"{path}: cannot read: {exc}") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise GravityError(f"{path}: missing column(s) {', '.join(missing)}")
    return table.select(columns)
