"""Errors that the CLI turns into one clear line and exit code 2."""

from __future__ import annotations


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
