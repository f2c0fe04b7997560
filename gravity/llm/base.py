"""The one interface every backend implements, used by generation and judging alike."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant"]


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    content: str


class ChatRequest(BaseModel):
    """A conversation to complete. ``id`` is the caller's label (not part of any cache key)."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Message] = Field(min_length=1)
    id: str | None = None

    @classmethod
    def from_prompt(
        cls, prompt: str, system: str | None = None, id: str | None = None
    ) -> ChatRequest:
        """A single user turn, optionally after a system message."""
        messages = [Message(role="system", content=system)] if system else []
        messages.append(Message(role="user", content=prompt))
        return cls(messages=messages, id=id)

    def as_dicts(self) -> list[dict[str, str]]:
        """Messages in the ``[{"role": ..., "content": ...}]`` form libraries expect."""
        return [m.model_dump() for m in self.messages]


class SamplingParams(BaseModel):
    """How to sample. Every field here is part of the cache key.

    ``n`` > 1 asks for several samples per request: the engine runs sample ``j`` with seed
    ``seed + j`` and returns them request-major.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(default=256, ge=1, le=32768)
    temperature: float = Field(default=0.7, ge=0, le=5)
    top_p: float = Field(default=0.95, gt=0, le=1)
    seed: int = 0
    n: int = Field(default=1, ge=1, le=64)
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = Field(
        default=None,
        description="Ask for JSON matching this schema; constrained where the backend can.",
    )


class Completion(BaseModel):
    """One completion, with token counts and why it stopped.

    ``finish_reason="error"``: this one request failed (e.g. a server refused it with a 4xx);
    ``error`` holds the reason and ``text`` is empty. Such completions are never stored.
    """

    model_config = ConfigDict(extra="forbid")

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: Literal["stop", "length", "error"] = "stop"
    error: str | None = None
    cached: bool = False


class Backend(abc.ABC):
    """A text generator. Heavy libraries are imported in ``load()``, never at import time.

    Subclasses set ``name`` and whether they constrain JSON output natively.
    """

    name: str = "abstract"
    constrains_json: bool = False

    def __init__(self, config: Any) -> None:
        self.config = config
        self._loaded = False

    @abc.abstractmethod
    def load(self) -> None:
        """Load the model or connect; idempotent."""

    def close(self) -> None:
        """Release memory, connections and processes."""
        self._loaded = False

    @abc.abstractmethod
    def generate(
        self,
        requests: list[ChatRequest],
        params: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        """One completion per request, in input order (``params.n`` is handled by the engine).

        ``seeds`` gives each request its own seed (default: ``params.seed`` for all). Every
        backend samples a request from a random stream seeded by its own seed alone, never by
        its batch neighbours, the batch size or the order.
        """

    @abc.abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """What identifies this model's outputs: backend kind, model id, revision or weights hash.

        Part of every cache key; must not include batch size, concurrency or memory knobs.
        """

    @property
    def can_score(self) -> bool:
        """Whether this backend reads label probabilities (``score_labels``) itself."""
        return type(self).score_labels is not Backend.score_labels

    def score_labels(
        self, requests: list[ChatRequest], labels: list[str]
    ) -> list[dict[str, float]]:
        """Per request, the log-probability of each label as the assistant's whole answer.

        One label is read per request as the first thing the assistant would write after the
        conversation (likelihood judging: no text is generated or parsed). Backends that cannot
        read probabilities leave this unimplemented; callers check ``can_score``.
        """
        raise NotImplementedError(f"backend '{self.name}' cannot score labels")

    def __enter__(self) -> Backend:
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request_seeds(n: int, params: SamplingParams, seeds: Sequence[int] | None) -> list[int]:
    """Per-request seeds: ``seeds`` as given (checked), else ``params.seed`` for every request."""
    if seeds is None:
        return [params.seed] * n
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds for {n} requests")
    return list(seeds)


def weights_fingerprint(path: Path) -> str:
    """A fast, content-based fingerprint of a model file or directory.

    For each weight-like file: relative name, size and sha256 of its first and last MiB. Catches
    retrained or re-quantized weights without reading gigabytes.
    """
    import hashlib

    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    chunk = 1 << 20
    for file in files:
        if file.suffix not in {".safetensors", ".bin", ".gguf", ".json", ".pt", ".model"}:
            continue
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}:{size}".encode())
        with open(file, "rb") as f:
            digest.update(f.read(chunk))
            if size > 2 * chunk:
                f.seek(-chunk, 2)
                digest.update(f.read(chunk))
    return digest.hexdigest()[:16]
