"""``openai`` backend: any OpenAI-compatible chat-completions server (``vllm serve``, llama.cpp's
server, TGI, hosted APIs).

Requests are spread round-robin over ``base_urls`` with at most ``concurrency`` in flight per
server; ``generate_stream`` dispatches continuously (a slow request holds only its own slot,
never a batch) and yields each completion as it arrives, for the engine to store in chunks. 408,
429, 5xx, timeouts and connection errors are retried with exponential backoff on the next URL (a
failing URL cools down for a few seconds), so a dead server's share moves to the live ones. Any
other 4xx refuses one request, not the run: it comes back as a completion with
``finish_reason="error"`` and the server's reason (the engine records it as a reject), except
401/403/404/405, which no request can pass (key, URL, model name) and stop the run. The API key
is read from the environment variable ``api_key_env`` only, and never logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from gravity.errors import GravityError
from gravity.llm.base import Backend, ChatRequest, Completion, SamplingParams, request_seeds
from gravity.llm.config import BackendConfig

log = logging.getLogger(__name__)
COOLDOWN_S = 5.0
# Worth another try (elsewhere, later), like every 5xx: timeouts and rate limits.
RETRYABLE = frozenset({408, 429})
# Wrong for every request (key, URL, model name): the run stops with the server's reason.
FATAL = frozenset({401, 403, 404, 405})


def server_reason(resp: Any) -> str:
    """The server's own words for an error response: ``error.message`` of an OpenAI-style body,
    else the start of the body."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        message = message or data.get("detail")  # FastAPI's validation errors
        if message:
            return " ".join(str(message).split())[:500]
    return " ".join(resp.text.split())[:300] or "(empty body)"


def _run_loop(coro: Any) -> Any:
    """``coro`` on a fresh event loop: uvloop's where it is installed (Linux and macOS: a
    fleet run spent about a third of its client CPU in asyncio's transports), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


class _Retryable(Exception):
    pass


class _Response:
    """A finished HTTP response: status and body, read inside the connection's context."""

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code = status_code
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        import orjson

        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            # orjson refuses what json takes after a lossy decode (invalid UTF-8 inside a
            # string): keep the stdlib's answer for those bodies.
            import json

            return json.loads(self.text)


async def _post(client: Any, url: str, body: bytes, headers: dict[str, str]) -> _Response:
    async with client.post(url, data=body, headers=headers) as resp:
        return _Response(resp.status, await resp.read())


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What a request that got no usable answer raises: connection errors, timeouts, a body
    that is not an OpenAI answer."""
    import aiohttp

    # ValueError: a body that is not JSON; KeyError, IndexError, TypeError: JSON without
    # a choice (a server's error object under status 200).
    return (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, IndexError, TypeError)


def _error_kind(exc: BaseException) -> str:
    """A stable word for an error: ``Timeout``, ``ConnectError``, else the exception's type."""
    import aiohttp

    if isinstance(exc, asyncio.TimeoutError):
        return "Timeout"
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError)):
        return "ConnectError"
    return type(exc).__name__


class OpenAIBackend(Backend):
    """Async HTTP client behind the synchronous backend interface."""

    name = "openai"

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        if not config.base_urls:
            raise GravityError("openai backend: base_urls is empty")
        self.urls = [u.rstrip("/") for u in config.base_urls]
        self.url_counts: Counter[str] = Counter()  # successful requests per URL
        self.refused = 0  # requests a server refused with a 4xx (returned as error completions)
        self._cooldown: dict[str, float] = {}
        self._next = 0
        self._slots: dict[str, asyncio.Semaphore] = {}  # per server, made inside the loop
        self._streak = 0  # requests in a row that ran out of retries

    @property
    def constrains_json(self) -> bool:  # type: ignore[override]
        return self.config.json_mode != "prompt"

    def load(self) -> None:
        try:
            import aiohttp  # noqa: F401
        except ImportError:  # pragma: no cover - aiohttp is a core dependency
            raise GravityError(
                "the openai backend needs aiohttp, a dependency of gravity: "
                "pip install 'aiohttp>=3.9,<4'"
            ) from None
        self._loaded = True

    def fingerprint(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.config.model,
            "revision": self.config.model_revision or "unspecified",
        }

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.config.api_key_env)
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _body(self, request: ChatRequest, params: SamplingParams, seed: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": request.as_dicts(),
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": seed,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.json_schema is not None and self.config.json_mode != "prompt":
            if self.config.json_mode == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": params.json_schema},
                }
            else:
                body["response_format"] = {"type": "json_object", "schema": params.json_schema}
        return body

    def _pick_url(self) -> str:
        now = time.monotonic()
        for _ in range(len(self.urls)):
            url = self.urls[self._next % len(self.urls)]
            self._next += 1
            if self._cooldown.get(url, 0.0) <= now:
                return url
        # Every URL is cooling down: use the one that recovers first.
        return min(self.urls, key=lambda u: self._cooldown.get(u, 0.0))

    async def _one(
        self,
        client: Any,
        request: ChatRequest,
        params: SamplingParams,
        seed: int,
    ) -> Completion:
        import orjson

        try:  # encoded once, sent as is on every attempt
            body = orjson.dumps(self._body(request, params, seed))
        except TypeError as exc:  # e.g. a seed past 64 bits, a schema key that is not a string
            raise GravityError(f"openai backend: a request cannot be sent as JSON: {exc}") from None
        headers = self._headers()
        attempt = 0
        while True:
            url = self._pick_url()
            try:
                async with self._slots[url]:
                    resp = await _post(client, f"{url}/chat/completions", body, headers)
                status = resp.status_code
                if status in RETRYABLE or status >= 500:
                    raise _Retryable(f"HTTP {status}")
                if status in FATAL:
                    raise GravityError(
                        f"openai backend: {url} answered HTTP {status}: {server_reason(resp)}"
                    )
                if status >= 400:
                    # This request is at fault (e.g. its prompt is over the server's
                    # context): it fails alone; the rest of the batch goes on.
                    self.refused += 1
                    reason = f"HTTP {status}: {server_reason(resp)}"
                    log.warning("%s refused a request: %s", url, reason)
                    return Completion(text="", finish_reason="error", error=reason)
                data = resp.json()
                choice = data["choices"][0]
            except (*_transport_errors(), _Retryable) as exc:
                self._cooldown[url] = time.monotonic() + COOLDOWN_S
                attempt += 1
                reason = f"{_error_kind(exc)}: {exc}".rstrip(": ")
                if attempt > self.config.max_retries:
                    return self._exhausted(
                        f"failed after {attempt} attempt(s); last error from {url}: {reason}"
                    )
                delay = min(8.0, 0.25 * 2 ** (attempt - 1)) * (1 + random.random())
                log.warning("%s: %s; retry %d in %.1fs", url, reason, attempt, delay)
                await asyncio.sleep(delay)
                continue
            self.url_counts[url] += 1
            self._streak = 0
            usage = data.get("usage") or {}
            return Completion(
                text=(choice.get("message") or {}).get("content") or "",
                prompt_tokens=usage.get("prompt_tokens", 0),
                completion_tokens=usage.get("completion_tokens", 0),
                finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            )

    def _exhausted(self, reason: str) -> Completion:
        """A request out of retries fails alone (a reject with its reason, sent again by a
        rerun), unless every slot's last request failed the same way: then the servers are
        down, and the run stops."""
        self._streak += 1
        if self._streak >= self.config.concurrency * len(self.urls):
            raise GravityError(f"openai backend: the last {self._streak} requests all {reason}")
        log.warning("a request %s", reason)
        return Completion(text="", finish_reason="error", error=reason)

    def _check_all_failed(self, outs: Sequence[Completion]) -> None:
        """A run whose every request ran out of retries stops, however few they were."""
        if outs and self._streak >= len(outs) and all(o.finish_reason == "error" for o in outs):
            raise GravityError(f"openai backend: request {outs[-1].error}")

    def _client(self) -> Any:
        """An HTTP session for one event loop, with the per-server slots.

        aiohttp, not httpx: against the same local mock server, on the same 2 busy cores, 64
        requests in flight, aiohttp's client made 441 requests/s and httpx's 44."""
        import aiohttp

        self._slots = {url: asyncio.Semaphore(self.config.concurrency) for url in self.urls}
        connector = aiohttp.TCPConnector(limit=self.config.concurrency * len(self.urls))
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        return aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def _run(
        self, requests: list[ChatRequest], params: SamplingParams, seeds: list[int]
    ) -> list[Completion]:
        self._streak = 0
        async with self._client() as client:
            outs = list(
                await asyncio.gather(
                    *(self._one(client, r, params, s) for r, s in zip(requests, seeds))
                )
            )
        self._check_all_failed(outs)
        return outs

    def generate_stream(
        self, requests: Sequence[ChatRequest], params: Sequence[SamplingParams]
    ) -> Iterator[tuple[int, Completion]]:
        """``(position, completion)`` for every request, in the order they finish; each request
        is sent with its own params (and their seed). Up to ``concurrency`` requests per server
        are in flight at every moment. An error that stops the run is raised here after the
        completions that finished before it were yielded."""
        self.load()
        out: queue.Queue = queue.Queue(maxsize=4096)
        stop = threading.Event()
        worker = threading.Thread(
            target=lambda: _run_loop(self._stream(requests, params, out, stop)), daemon=True
        )
        worker.start()
        try:
            while True:
                item = out.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            # Workers may be waiting to put into a full queue: drain it so they see the stop.
            deadline = time.monotonic() + self.config.timeout_s
            while worker.is_alive() and time.monotonic() < deadline:
                with contextlib.suppress(queue.Empty):
                    while True:
                        out.get_nowait()
                worker.join(timeout=0.05)

    async def _stream(
        self,
        requests: Sequence[ChatRequest],
        params: Sequence[SamplingParams],
        out: queue.Queue,
        stop: threading.Event,
    ) -> None:
        """Workers (``concurrency`` per server) that take the next request as soon as theirs
        is answered; results and a final None (or the error) go to ``out``."""
        todo = iter(range(len(requests)))
        loop = asyncio.get_running_loop()
        self._streak = 0
        failed: list[Completion] = []
        errors: list[Exception] = []
        halt = asyncio.Event()  # set by a worker whose request stops the run
        answered = 0

        def put_blocking(item: Any) -> None:
            """Put, waiting for room, unless the consumer has gone (then drop it)."""
            while not stop.is_set():
                with contextlib.suppress(queue.Full):
                    out.put(item, timeout=0.1)
                    return

        async def put(item: Any) -> None:
            await loop.run_in_executor(None, put_blocking, item)

        async def work(client: Any) -> None:
            for i in todo:
                if stop.is_set() or halt.is_set():
                    return
                try:
                    done = await self._one(client, requests[i], params[i], params[i].seed)
                except Exception as exc:
                    # The run stops: dispatch nothing more, but let the requests in flight
                    # finish and be handed over (their answers must not be asked for again).
                    errors.append(exc)
                    halt.set()
                    return
                nonlocal answered
                answered += 1
                if done.finish_reason == "error":
                    failed.append(done)
                if out.full():
                    await put((i, done))
                else:
                    out.put_nowait((i, done))

        try:
            async with self._client() as client:
                workers = self.config.concurrency * len(self.urls)
                await asyncio.gather(*(work(client) for _ in range(min(workers, len(requests)))))
            if errors:
                raise errors[0]
            if len(failed) == answered:
                self._check_all_failed(failed)
        except BaseException as exc:  # handed to the caller's thread, which raises it
            put_blocking(exc)
            return
        put_blocking(None)

    def generate(
        self,
        requests: list[ChatRequest],
        params: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        self.load()
        run = self._run(requests, params, request_seeds(len(requests), params, seeds))
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return _run_loop(run)
        # Called from inside an event loop (a notebook): run ours in a worker thread.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(_run_loop, run).result()
