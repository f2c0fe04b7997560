"""The engine: batches requests through a backend, with the durable store in front.

- ``generate``: completions in input order; stored ones are returned without calling the model,
  new ones are written per batch (a kill loses at most the batch in flight; when a backend's
  worker process crashes, the completions it finished in that batch are written too). A request
  the backend refused (``finish_reason="error"``) is returned but never stored.
- ``generate_structured``: JSON validated into a pydantic model; a parse or validation failure
  is retried with a new seed a bounded number of times, then returned as a ``Reject`` with its
  reason. Parsing never raises.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from gravity.errors import first_problem
from gravity.llm.base import Backend, ChatRequest, Completion, Message, SamplingParams
from gravity.llm.worker import WorkerDied
from gravity.progress import Progress
from gravity.prompts import render
from gravity.store import Store, canonical_json, hash_key

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")

RETRY_SEED_STRIDE = 1_000_003  # retry k of a request uses seed + k * stride: never a sample seed


@dataclass(frozen=True)
class Reject:
    """A request whose output could not be used: a short ``kind`` (for counts) and a reason."""

    reason: str
    text: str = ""
    kind: str = "unparsable"


@dataclass(frozen=True)
class Parsed(Generic[R]):
    """A parsed output, with the completion it came from and the attempts it took."""

    value: R
    completion: Completion
    attempts: int


def extract_json(text: str) -> Any:
    """The first JSON object in ``text`` (code fences and chatter around it are ignored).

    Raises ``ValueError`` with a short reason when there is none.
    """
    stripped = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    start = stripped.find("{")
    if start < 0:
        raise ValueError("no JSON object in output")
    decoder = json.JSONDecoder()
    while start >= 0:
        try:
            value, _ = decoder.raw_decode(stripped, start)
            return value
        except json.JSONDecodeError:
            start = stripped.find("{", start + 1)
    raise ValueError("malformed JSON in output")


def parse_structured(text: str, model: type[T]) -> T | Reject:
    """Validate ``text`` as JSON for ``model``; a ``Reject`` with the reason on failure."""
    try:
        data = extract_json(text)
    except ValueError as exc:
        return Reject(str(exc), text, "invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return Reject(f"schema: {first_problem(exc, model, '<root>')}", text, "schema_mismatch")


class Engine:
    """Runs requests through ``backend``, reading and writing ``store`` (if given).

    ``use_cache=False`` bypasses reads but still writes, so a forced rerun refreshes the store.
    """

    def __init__(
        self,
        backend: Backend,
        store: Store | None = None,
        batch_size: int | None = None,
        use_cache: bool = True,
        progress: bool = True,
    ) -> None:
        self.backend = backend
        self.store = store
        self.batch_size = batch_size or _default_batch_size(backend)
        self.use_cache = use_cache
        self.progress = progress
        self.calls = 0  # backend.generate calls made (for tests and reports)
        self.tokens: Counter[str] = Counter()  # tokens of completions generated (not cached)
        self._fingerprint: dict[str, Any] | None = None

    @property
    def fingerprint(self) -> dict[str, Any]:
        if self._fingerprint is None:
            self._fingerprint = self.backend.fingerprint()
        return self._fingerprint

    def key(self, request: ChatRequest, params: SamplingParams) -> str:
        """Cache key: backend fingerprint, messages and the sampling params of one sample."""
        sample = params.model_dump(mode="json", exclude={"n"})
        return hash_key(
            {"model": self.fingerprint, "messages": request.as_dicts(), "params": sample}
        )

    def generate(
        self,
        requests: Sequence[ChatRequest],
        params: SamplingParams | Sequence[SamplingParams],
        desc: str = "generate",
    ) -> list[Completion]:
        """Completions for ``requests``: ``n`` per request, request-major.

        ``params`` is one ``SamplingParams`` for all requests or one per request (e.g. a seed
        per record). Requests whose params differ only in the seed share batches.
        """
        per_request = _per_request(params, len(requests))
        items: list[tuple[ChatRequest, SamplingParams]] = []
        for request, p in zip(requests, per_request):
            for j in range(p.n):
                items.append((request, p.model_copy(update={"seed": p.seed + j, "n": 1})))
        keys = [self.key(r, p) for r, p in items]
        results: list[Completion | None] = [None] * len(items)
        stored = self.store.get_completions(keys) if (self.store and self.use_cache) else {}
        todo: list[int] = []
        for index, key in enumerate(keys):
            if key in stored:
                results[index] = Completion(**stored[key], cached=True)
            else:
                todo.append(index)
        # Groups share sampling params (but the seed); within a group, similar lengths together
        # waste less padding.
        group = {i: canonical_json(items[i][1].model_dump(exclude={"seed"})) for i in todo}
        todo.sort(key=lambda i: (group[i], -sum(len(m.content) for m in items[i][0].messages)))
        with Progress(len(todo), desc, enabled=self.progress) as bar:
            for batch in _batches(todo, group, self.batch_size):
                outs = self._generate_batch(batch, keys, items)
                for i, out in zip(batch, outs):
                    results[i] = out
                bar.advance(len(batch), sum(o.completion_tokens for o in outs))
        return [r for r in results if r is not None]

    def _generate_batch(
        self,
        batch: list[int],
        keys: list[str],
        items: list[tuple[ChatRequest, SamplingParams]],
    ) -> list[Completion]:
        """One backend call for the ``batch`` positions of ``items``; stored as it returns (a
        crashed worker's finished completions too) and counted."""
        try:
            outs = self.backend.generate(
                [items[i][0] for i in batch],
                items[batch[0]][1],
                seeds=[items[i][1].seed for i in batch],
            )
        except WorkerDied as exc:
            # The backend's process crashed mid-batch: keep what it had finished.
            self._store(batch, exc.completed, keys, items)
            raise
        self.calls += 1
        if len(outs) != len(batch):
            raise RuntimeError(
                f"backend {self.backend.name} returned {len(outs)} completions "
                f"for {len(batch)} requests"
            )
        self._store(batch, outs, keys, items)
        self.tokens["prompt"] += sum(o.prompt_tokens for o in outs)
        self.tokens["completion"] += sum(o.completion_tokens for o in outs)
        return outs

    def _store(
        self,
        batch: list[int],
        outs: Sequence[Completion],
        keys: list[str],
        items: list[tuple[ChatRequest, SamplingParams]],
    ) -> None:
        """Write ``outs`` (the first ``len(outs)`` of ``batch``); failed requests are not stored,
        so a rerun tries them again."""
        if self.store is None:
            return
        fp = canonical_json(self.fingerprint)
        rows = [
            (keys[i], fp, canonical_json(items[i][0].as_dicts()), out.model_dump())
            for i, out in zip(batch, outs)
            if out.finish_reason != "error"
        ]
        if rows:
            self.store.put_completions(rows)

    def generate_parsed(
        self,
        requests: Sequence[ChatRequest],
        params: SamplingParams | Sequence[SamplingParams],
        parse: Callable[[Completion, int], R | Reject],
        max_attempts: int = 3,
        desc: str = "generate",
    ) -> list[Parsed[R] | Reject]:
        """Completions turned into results by ``parse(completion, index)``.

        ``parse`` returns a result or a ``Reject``; rejected requests are retried with a new seed
        up to ``max_attempts`` in all, then returned as the last ``Reject`` (reason annotated).
        A request the backend refused (``finish_reason="error"``) is a ``backend_error`` reject
        with the backend's reason, without retries.
        """
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        per_request = [p.model_copy(update={"n": 1}) for p in _per_request(params, len(requests))]
        results: list[Parsed[R] | Reject | None] = [None] * len(requests)
        pending = list(range(len(requests)))
        last: dict[int, Reject] = {}
        for attempt in range(max_attempts):
            if not pending:
                break
            attempt_params = [
                per_request[i].model_copy(
                    update={"seed": per_request[i].seed + attempt * RETRY_SEED_STRIDE}
                )
                for i in pending
            ]
            label = desc if attempt == 0 else f"{desc} (retry {attempt})"
            outs = self.generate([requests[i] for i in pending], attempt_params, desc=label)
            still: list[int] = []
            for i, out in zip(pending, outs):
                if out.finish_reason == "error":
                    # The backend refused this request (e.g. HTTP 4xx): a new seed cannot help.
                    results[i] = Reject(out.error or "backend error", "", "backend_error")
                    continue
                parsed = parse(out, i)
                if isinstance(parsed, Reject):
                    last[i] = parsed
                    still.append(i)
                else:
                    results[i] = Parsed(parsed, out, attempt + 1)
            pending = still
        for i in pending:
            suffix = f" (after {max_attempts} attempts)" if max_attempts > 1 else ""
            results[i] = Reject(f"{last[i].reason}{suffix}", last[i].text, last[i].kind)
        return [r for r in results if r is not None]

    def generate_structured(
        self,
        requests: Sequence[ChatRequest],
        params: SamplingParams | Sequence[SamplingParams],
        model: type[T],
        max_attempts: int = 3,
        desc: str = "generate",
    ) -> list[Parsed[T] | Reject]:
        """JSON outputs validated into ``model``; retried with new seeds, then rejected."""
        schema = model.model_json_schema()
        params = [
            p.model_copy(update={"json_schema": schema})
            for p in _per_request(params, len(requests))
        ]
        prepared = [self.with_json_instruction(r, schema) for r in requests]
        return self.generate_parsed(
            prepared, params, lambda out, _i: parse_structured(out.text, model), max_attempts, desc
        )

    def with_json_instruction(self, request: ChatRequest, schema: dict[str, Any]) -> ChatRequest:
        """``request`` with the JSON-schema instruction appended, unless the backend constrains."""
        if self.backend.constrains_json:
            return request
        hint = render("json_instruction.j2", schema=json.dumps(schema, ensure_ascii=False))
        messages = list(request.messages)
        last = messages[-1]
        messages[-1] = Message(role=last.role, content=f"{last.content}\n\n{hint}")
        return request.model_copy(update={"messages": messages})

    def score_labels(
        self, requests: Sequence[ChatRequest], labels: Sequence[str], desc: str = "score"
    ) -> list[dict[str, float]]:
        """Per request, the backend's log-probability of each label as the answer.

        Stored like completions (key: backend fingerprint, messages and labels), so a rerun
        reads them back instead of calling the model.
        """
        labels = list(labels)
        keys = [
            hash_key({"model": self.fingerprint, "messages": r.as_dicts(), "score_labels": labels})
            for r in requests
        ]
        stored = self.store.get_completions(keys) if (self.store and self.use_cache) else {}
        results: list[dict[str, float] | None] = [
            json.loads(stored[k]["text"]) if k in stored else None for k in keys
        ]
        todo = [i for i, r in enumerate(results) if r is None]
        todo.sort(key=lambda i: -sum(len(m.content) for m in requests[i].messages))
        with Progress(len(todo), desc, enabled=self.progress) as bar:
            for start in range(0, len(todo), self.batch_size):
                batch = todo[start : start + self.batch_size]
                scores = self.backend.score_labels([requests[i] for i in batch], labels)
                self.calls += 1
                if len(scores) != len(batch):
                    raise RuntimeError(
                        f"backend {self.backend.name} scored {len(scores)} of {len(batch)} requests"
                    )
                if self.store is not None:
                    fp = canonical_json(self.fingerprint)
                    self.store.put_completions(
                        [
                            (
                                keys[i],
                                fp,
                                canonical_json(requests[i].as_dicts()),
                                {
                                    "text": json.dumps(score),
                                    "prompt_tokens": 0,
                                    "completion_tokens": 0,
                                    "finish_reason": "stop",
                                },
                            )
                            for i, score in zip(batch, scores)
                        ]
                    )
                for i, score in zip(batch, scores):
                    results[i] = score
                bar.advance(len(batch), 0)
        return [r for r in results if r is not None]


def _batches(todo: list[int], group: dict[int, str], size: int) -> Iterator[list[int]]:
    """Consecutive runs of ``todo`` with the same group, at most ``size`` each."""
    start = 0
    while start < len(todo):
        batch = [todo[start]]
        while (
            len(batch) < size
            and start + len(batch) < len(todo)
            and group[todo[start + len(batch)]] == group[todo[start]]
        ):
            batch.append(todo[start + len(batch)])
        start += len(batch)
        yield batch


def _per_request(params: SamplingParams | Sequence[SamplingParams], n: int) -> list[SamplingParams]:
    if isinstance(params, SamplingParams):
        return [params] * n
    if len(params) != n:
        raise ValueError(f"{len(params)} sampling params for {n} requests")
    return list(params)


def _default_batch_size(backend: Backend) -> int:
    config = getattr(backend, "config", None)
    size = getattr(config, "batch_size", 8)
    if backend.name == "openai":
        # Keep every server busy while committing to the store often.
        return max(size, config.concurrency * len(config.base_urls) * 2)
    if backend.name == "vllm":
        return max(size, 256)
    return size
