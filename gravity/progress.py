"""Progress for long work: a rich bar on a terminal, periodic plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any


def _eta(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else (f"{seconds // 60}m{seconds % 60:02d}s")
    )


class Progress:
    """Counts items (e.g. requests) and tokens; shows a bar on a TTY, else a line every
    ``interval_s`` seconds on stderr."""

    def __init__(
        self,
        total: int,
        desc: str,
        enabled: bool = True,
        interval_s: float = 10.0,
        unit: str = "requests",
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.enabled = enabled and total > 0
        self.interval_s = interval_s
        self.done = 0
        self.tokens = 0
        self._start = self._last = time.monotonic()
        self._rich: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._rich.start()
            self._task = self._rich.add_task(self.desc, total=self.total, rate="")
        return self

    def rate(self) -> float:
        """Tokens per second so far."""
        return self.tokens / max(time.monotonic() - self._start, 1e-9)

    def advance(self, n: int = 1, tokens: int = 0) -> None:
        self.done += n
        self.tokens += tokens
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.update(self._task, advance=n, rate=f"{self.rate():.1f} tok/s")
            return
        now = time.monotonic()
        if now - self._last >= self.interval_s or self.done >= self.total:
            self._last = now
            elapsed = now - self._start
            eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
            print(
                f"{self.desc}: {self.done}/{self.total} {self.unit}, {self.rate():.1f} tok/s, "
                f"elapsed {_eta(elapsed)}, eta {_eta(eta)}",
                file=sys.stderr,
                flush=True,
            )

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()
