"""The engine: batches requests through a backend, with the durable store in front.

- ``generate``: completions in input order; stored ones are returned without calling the model,
  new ones are written per batch (a kill loses at most the batch in flight; when a backend's
  worker process crashes, the completions it finished in that batch are written too). A request
  the backend refused (``finish_reason="error"``) is returned but never stored.
- ``generate_structured``: JSON validated into a pydantic model; a parse or validation failure
  is retried with a new seed a bounded number of times, then returned as a ``Reject`` with its
  reason. Parsing never raises.
- A fast stop: when the first ``fast_stop`` answers of a step's first pass are all rejects, the
  step ends with ``StructuredStop`` (one line: the step, the counts, a sample, what to do); a
  retry pass whose first ``fast_stop`` answers all fail again ends the retries. Retries happen
  only where a new seed can change the answer (sampling, ``temperature`` > 0).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from gravity.errors import GravityError, first_problem, printable
from gravity.llm.base import Backend, ChatRequest, Completion, Message, SamplingParams
from gravity.llm.constrain import json_example
from gravity.llm.worker import WorkerDied
from gravity.progress import Progress
from gravity.prompts import render
from gravity.store import Store, canonical_json, hash_key

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")

RETRY_SEED_STRIDE = 1_000_003  # retry k of a request uses seed + k * stride: never a sample seed
FAST_STOP = 32
"""Default of ``fast_stop``: answers of a structured step checked before the rest are asked."""

STRUCTURED_ADVICE = (
    "use a backend that constrains JSON (transformers with llguidance, llamacpp, openai, vllm) "
    "or a larger --model"
)


@dataclass(frozen=True)
class Reject:
    """A request whose output could not be used: a short ``kind`` (for counts) and a reason."""

    reason: str
    text: str = ""
    kind: str = "unparsable"


class StructuredStop(GravityError):
    """The first answers of a structured step were all rejects: the step stopped early.

    ``rejected`` rows were asked and failed; ``not_asked`` rows were never sent (the store
    keeps every completion made)."""

    def __init__(
        self,
        step: str,
        rejected: list[Reject],
        not_asked: int,
        advice: str,
        asked: int | None = None,
    ) -> None:
        self.step, self.rejected, self.not_asked = step, rejected, not_asked
        asked = len(rejected) if asked is None else asked
        kinds = Counter(r.kind for r in rejected)
        summary = ", ".join(f"{k} {n}" for k, n in kinds.most_common())
        sample = printable(rejected[0].text or rejected[0].reason, 120)
        super().__init__(
            f"{step}: stopped: the first {asked} answers were all invalid ({summary}; "
            f"{not_asked} more not asked); sample: '{sample}'; {advice}"
        )


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
        self.calls = 0  # backend.generate calls (or streams) made (for tests and reports)
        self.tokens: Counter[str] = Counter()  # tokens of completions generated (not cached)
        self._fingerprint: dict[str, Any] | None = None
        self._first_answers: dict[str, list[int]] = {}  # step -> [asked, parsed] (fast stop)

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
            if todo and hasattr(self.backend, "generate_stream"):
                self._generate_streaming(todo, keys, items, results, bar)
            else:
                for batch in _batches(todo, group, self.batch_size):
                    outs = self._generate_batch(batch, keys, items)
                    for i, out in zip(batch, outs):
                        results[i] = out
                    bar.advance(len(batch), sum(o.completion_tokens for o in outs))
        return [r for r in results if r is not None]

    def _generate_streaming(
        self,
        todo: list[int],
        keys: list[str],
        items: list[tuple[ChatRequest, SamplingParams]],
        results: list[Completion | None],
        bar: Progress,
    ) -> None:
        """All of ``todo`` through a backend that dispatches continuously: completions are
        taken as they finish and stored in chunks (``batch_size`` completions or a second,
        whichever first), so a kill loses at most one chunk; on an error the finished ones are
        stored before it is raised."""
        stream = self.backend.generate_stream(  # type: ignore[attr-defined]
            [items[i][0] for i in todo], [items[i][1] for i in todo]
        )
        self.calls += 1
        chunk: list[int] = []
        last = time.monotonic()
        try:
            with contextlib.closing(stream):  # an error here stops the backend's dispatch
                for pos, out in stream:
                    results[todo[pos]] = out
                    chunk.append(todo[pos])
                    if len(chunk) >= self.batch_size or time.monotonic() - last >= 1.0:
                        self._flush(chunk, results, keys, items, bar)
                        chunk, last = [], time.monotonic()
        finally:
            self._flush(chunk, results, keys, items, bar)

    def _flush(
        self,
        chunk: list[int],
        results: list[Completion | None],
        keys: list[str],
        items: list[tuple[ChatRequest, SamplingParams]],
        bar: Progress,
    ) -> None:
        if not chunk:
            return
        outs = [results[i] for i in chunk]
        self._store(chunk, outs, keys, items)  # type: ignore[arg-type]
        self.tokens["prompt"] += sum(o.prompt_tokens for o in outs)  # type: ignore[union-attr]
        self.tokens["completion"] += sum(o.completion_tokens for o in outs)  # type: ignore[union-attr]
        bar.advance(len(chunk), sum(o.completion_tokens for o in outs))  # type: ignore[union-attr]

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
        fast_stop: int | None = None,
        advice: str = STRUCTURED_ADVICE,
    ) -> list[Parsed[R] | Reject]:
        """Completions turned into results by ``parse(completion, index)``.

        ``parse`` returns a result or a ``Reject``; rejected requests are retried with a new seed
        (only when sampling: at temperature 0 a new seed gives the same answer) up to
        ``max_attempts`` in all, then returned as the last ``Reject`` (reason annotated). A
        request the backend refused (``finish_reason="error"``) is a ``backend_error`` reject
        with the backend's reason, without retries.

        ``fast_stop=K``: the first K requests of the first pass are asked before the others;
        when all K are rejected, ``StructuredStop`` is raised (its message ends with
        ``advice``). A retry pass whose first K answers are all rejected ends the retries.
        """
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        per_request = [p.model_copy(update={"n": 1}) for p in _per_request(params, len(requests))]
        results: list[Parsed[R] | Reject | None] = [None] * len(requests)
        run = _Pass(self, requests, per_request, parse, results)
        pending = list(range(len(requests)))
        final: list[int] = []  # rejected for good
        for attempt in range(max_attempts):
            if attempt > 0:
                # Only a sampled answer can change with the seed; the others would repeat.
                final += [i for i in pending if per_request[i].temperature == 0]
                pending = [i for i in pending if per_request[i].temperature > 0]
            if not pending:
                break
            label = desc if attempt == 0 else f"{desc} (retry {attempt})"
            if attempt == 0:
                pending = self._first_pass(run, pending, label, fast_stop, advice)
                continue
            head = pending[:fast_stop] if fast_stop else pending
            still = run.ask(head, attempt, label)
            if fast_stop and len(head) == fast_stop and len(still) == len(head):
                note = f"{label}: the first {len(head)} answers all failed again; no more retries"
                print(note, file=sys.stderr, flush=True)
                final += pending
                pending = []
                break
            pending = still + run.ask(pending[len(head) :], attempt, label)
        for i in final + pending:
            last, tries = run.last[i], run.tried[i]
            suffix = f" (after {tries} attempts)" if tries > 1 else ""
            results[i] = Reject(f"{last.reason}{suffix}", last.text, last.kind)
        return [r for r in results if r is not None]

    def _first_pass(
        self, run: _Pass, pending: list[int], desc: str, fast_stop: int | None, advice: str
    ) -> list[int]:
        """The first attempt of ``pending``; the rejected. The first ``fast_stop`` answers of a
        step (``desc``), counted across calls (a step may come in rounds), are asked before the
        others, and raise ``StructuredStop`` when none of them parsed."""
        # A step asked in rounds labels them "name i/n": one count for all its rounds.
        step = re.sub(r"\s+\d+/\d+$", "", desc)
        tally = self._first_answers.setdefault(step, [0, 0])  # asked, parsed
        if not fast_stop or tally[0] >= fast_stop:
            return run.ask(pending, 0, desc)
        head = pending[: fast_stop - tally[0]]
        still = run.ask(head, 0, desc)
        tally[0] += len(head)
        tally[1] += sum(isinstance(run.results[i], Parsed) for i in head)
        if tally[0] >= fast_stop and tally[1] == 0:
            rejects = [run.last[i] if i in run.last else run.results[i] for i in head]
            raise StructuredStop(step, rejects, len(pending) - len(head), advice, tally[0])
        return still + run.ask(pending[len(head) :], 0, desc)

    def generate_structured(
        self,
        requests: Sequence[ChatRequest],
        params: SamplingParams | Sequence[SamplingParams],
        model: type[T],
        max_attempts: int = 3,
        desc: str = "generate",
        fast_stop: int | None = FAST_STOP,
        advice: str = STRUCTURED_ADVICE,
    ) -> list[Parsed[T] | Reject]:
        """JSON outputs validated into ``model``; retried with new seeds, then rejected; a step
        whose first ``fast_stop`` answers all fail stops (see ``generate_parsed``)."""
        schema = model.model_json_schema()
        params = [
            p.model_copy(update={"json_schema": schema})
            for p in _per_request(params, len(requests))
        ]
        prepared = [self.with_json_instruction(r, schema) for r in requests]
        return self.generate_parsed(
            prepared,
            params,
            lambda out, _i: parse_structured(out.text, model),
            max_attempts,
            desc,
            fast_stop,
            advice,
        )

    def with_json_instruction(self, request: ChatRequest, schema: dict[str, Any]) -> ChatRequest:
        """``request`` with an instruction and an example object for ``schema`` appended, unless
        the backend constrains its decoding to the schema."""
        if self.backend.constrains_json:
            return request
        example = json.dumps(json_example(schema), ensure_ascii=False)
        hint = render("json_instruction.j2", example=example)
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


@dataclass
class _Pass:
    """Asks requests of ``generate_parsed`` once per attempt: fills ``results`` with what parsed
    (or what the backend refused), ``last`` with each request's latest reject and ``tried``
    with the attempts made."""

    engine: Engine
    requests: Sequence[ChatRequest]
    per_request: list[SamplingParams]
    parse: Callable[[Completion, int], Any]
    results: list[Any]
    last: dict[int, Reject] = field(default_factory=dict)
    tried: Counter[int] = field(default_factory=Counter)

    def ask(self, indices: list[int], attempt: int, label: str) -> list[int]:
        """Ask ``indices`` once (attempt ``attempt``: its seeds); the ones rejected."""
        if not indices:
            return []
        stride = attempt * RETRY_SEED_STRIDE
        params = [
            self.per_request[i].model_copy(update={"seed": self.per_request[i].seed + stride})
            for i in indices
        ]
        outs = self.engine.generate([self.requests[i] for i in indices], params, desc=label)
        self.tried.update(indices)
        still: list[int] = []
        for i, out in zip(indices, outs):
            if out.finish_reason == "error":
                # The backend refused this request (e.g. HTTP 4xx): a new seed cannot help.
                self.results[i] = Reject(out.error or "backend error", "", "backend_error")
                continue
            parsed = self.parse(out, i)
            if isinstance(parsed, Reject):
                self.last[i] = parsed
                still.append(i)
            else:
                self.results[i] = Parsed(parsed, out, attempt + 1)
        return still


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
