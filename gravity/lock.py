"""One writer per output folder: an OS file lock (``filelock``) held while a command writes.

A second ``gravity generate`` or ``gravity run`` on a folder in use stops at once with the holder's
pid instead of redoing the same work side by side. The lock is released by the OS when its holder
exits, however it exits (kill -9 included), so a stale lock never blocks a rerun.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from gravity.errors import GravityError

LOCK_NAME = ".gravity.lock"
OWNER_NAME = ".gravity.lock.owner"


class FolderBusyError(GravityError):
    """The output folder is locked by another running gravity process."""


def _owner(folder: Path) -> str:
    try:
        info = json.loads((folder / OWNER_NAME).read_text())
        return f" (pid {info['pid']} on {info['host']}, since {info['since']}: {info['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""  # the holder has not written its details yet, or they are unreadable


@contextlib.contextmanager
def folder_lock(folder: Path, what: str = "output folder") -> Iterator[Path]:
    """Hold ``folder``'s lock (creating the folder) for the duration of the block.

    Raises ``FolderBusyError`` naming the holder when another process holds it. A folder this
    call created is removed again when the block fails before writing anything else into it.
    """
    try:
        from filelock import FileLock, Timeout
    except ImportError:  # pragma: no cover - a torch dependency, so always present in practice
        raise GravityError("the folder lock needs 'filelock': pip install filelock") from None
    folder = Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GravityError(f"{folder}: cannot create the {what}: {exc.strerror or exc}") from None
    lock = FileLock(str(folder / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise FolderBusyError(
            f"{folder}: the {what} is in use by another gravity process{_owner(folder)}; "
            "wait for it to finish or choose another output folder"
        ) from None
    owner = folder / OWNER_NAME
    succeeded = False
    try:
        owner.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "command": " ".join(sys.argv)[:200],
                }
            )
            + "\n"
        )
        yield folder
        succeeded = True
    finally:
        owner.unlink(missing_ok=True)
        # A folder this call created and left empty goes away (nothing half-written is left);
        # the lock file is unlinked while still held, so no other process can hold it meanwhile.
        empty = created and not succeeded and _only_lock(folder)
        if empty:
            (folder / LOCK_NAME).unlink(missing_ok=True)
        lock.release()
        if empty:
            with contextlib.suppress(OSError):  # another process may have written into it
                folder.rmdir()


def _only_lock(folder: Path) -> bool:
    try:
        return {p.name for p in folder.iterdir()} <= {LOCK_NAME, OWNER_NAME}
    except OSError:
        return False
