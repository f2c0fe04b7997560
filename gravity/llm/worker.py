"""Native inference in a child process, so that a crash in native code is an error, not a death.

A backend that runs a native library in-process (llama.cpp) would take the user's run down with
it on a segmentation fault. Instead the library runs in a worker: a child Python process started
with ``python -m gravity.llm.worker_main MODULE:FACTORY`` that speaks JSON lines: one message a
line on its stdin, and for each, its replies (``{"ok": ...}``, or one ``{"error": ...}``) a line
each on a private copy of its stdout. When the worker dies,
the parent raises ``WorkerDied`` naming the backend and the signal, carrying the completions that
the batch had already made (the engine stores them before passing the error on).

A plain subprocess is used rather than ``multiprocessing``: it does not re-import the user's
``__main__`` (scripts without a ``__name__`` guard keep working), and the worker's C-level writes
to stdout cannot corrupt the protocol (fd 1 is pointed at stderr inside the worker).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from gravity.errors import GravityError
from gravity.llm.base import Completion


class WorkerDied(GravityError):
    """The worker process ended while it owed replies. ``completed`` holds the completions of
    the current batch that arrived before it died, in request order."""

    def __init__(self, message: str, completed: list[Completion] | None = None) -> None:
        super().__init__(message)
        self.completed = completed or []


class Handler(Protocol):
    """What a worker serves: ``handle(message)`` yields the reply dicts for one message."""

    def handle(self, message: dict[str, Any]) -> Iterator[dict[str, Any]]: ...


def describe_exit(returncode: int | None) -> str:
    """``died with SIGSEGV`` / ``exited with code 3`` for a child's return code."""
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        try:
            return f"died with {signal.Signals(-returncode).name}"
        except ValueError:
            return f"died with signal {-returncode}"
    return f"exited with code {returncode}"


class Worker:
    """The parent's end of one worker process (started by ``start()``, ended by ``close()``)."""

    def __init__(self, backend: str, factory: str) -> None:
        self.backend = backend
        self.factory = factory
        self.proc: subprocess.Popen[str] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the child; it imports ``factory`` (``module:callable``) to build its handler."""
        env = dict(os.environ)
        # The child must import this same gravity (a source checkout may not be installed).
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gravity.llm.worker_main", self.factory],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
            env=env,
        )

    def _died(self, doing: str, completed: list[Completion] | None = None) -> WorkerDied:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return WorkerDied(f"{self.backend} backend worker {describe_exit(code)} {doing}", completed)

    def request(self, message: dict[str, Any], replies: int, doing: str) -> Iterator[dict]:
        """Send ``message`` and yield its ``replies`` replies as they arrive.

        Raises ``WorkerDied`` if the worker ends first (after yielding what did arrive), and
        ``GravityError`` with the worker's message if it answers with an error.
        """
        if not self.alive:
            self.start()
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died(doing) from None
        for _ in range(replies):
            line = self.proc.stdout.readline()
            if not line:
                raise self._died(doing)
            reply = json.loads(line)
            if "error" in reply:
                raise GravityError(f"{self.backend} backend: {reply['error']}")
            yield reply["ok"]

    def close(self) -> None:
        """Ask the worker to exit; kill it if it does not within a few seconds."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin:
                proc.stdin.close()  # EOF: the worker's loop ends
            proc.wait(timeout=10)
        except (subprocess.TimeoutExpired, OSError):
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _serve(handler: Handler, inp: IO[str], out: IO[str]) -> None:
    for line in inp:
        message = json.loads(line)
        try:
            for reply in handler.handle(message):
                out.write(json.dumps({"ok": reply}) + "\n")
                out.flush()
        except Exception as exc:  # reported to the parent as one line; the worker lives on
            out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
            out.flush()


def main(argv: list[str]) -> None:
    """Worker entry point (``python -m gravity.llm.worker_main MODULE:FACTORY``)."""
    # The protocol gets a private copy of stdout; fd 1 then points at stderr, so that anything
    # native code prints goes to the user's terminal instead of into the protocol.
    # Ctrl-C reaches the whole process group: the parent handles it and ends the worker by
    # closing its stdin, so the worker does not print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    module, _, factory = argv[0].partition(":")
    handler = getattr(importlib.import_module(module), factory)()
    _serve(handler, sys.stdin, out)
