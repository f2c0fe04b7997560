"""``openai`` backend: any OpenAI-compatible chat-completions server (``vllm serve``, llama.cpp's
server, TGI, hosted APIs).

Requests are spread round-robin over ``base_urls`` with at most ``concurrency`` in flight; 408,
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
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
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


class _Retryable(Exception):
    pass


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

    @property
    def constrains_json(self) -> bool:  # type: ignore[override]
        return self.config.json_mode != "prompt"

    def load(self) -> None:
        try:
            import httpx  # noqa: F401
        except ImportError:  # pragma: no cover - httpx is a core dependency
            from gravity.errors import MissingDependencyError

            raise MissingDependencyError("the openai backend", "openai", "httpx") from None
        self._loaded = True

    def fingerprint(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.config.model,
            "revision": self.config.model_revision or "unspecified",
        }

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.config.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

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
        sem: asyncio.Semaphore,
        request: ChatRequest,
        params: SamplingParams,
        seed: int,
    ) -> Completion:
        import httpx

        body = self._body(request, params, seed)
        attempt = 0
        async with sem:
            while True:
                url = self._pick_url()
                try:
                    resp = await client.post(
                        f"{url}/chat/completions", json=body, headers=self._headers()
                    )
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
                except (httpx.TransportError, _Retryable) as exc:
                    self._cooldown[url] = time.monotonic() + COOLDOWN_S
                    attempt += 1
                    reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
                    if attempt > self.config.max_retries:
                        raise GravityError(
                            f"openai backend: request failed after {attempt} attempt(s); "
                            f"last error from {url}: {reason}"
                        ) from None
                    delay = min(8.0, 0.25 * 2 ** (attempt - 1)) * (1 + random.random())
                    log.warning("%s: %s; retry %d in %.1fs", url, reason, attempt, delay)
                    await asyncio.sleep(delay)
                    continue
                self.url_counts[url] += 1
                choice = data["choices"][0]
                usage = data.get("usage") or {}
                return Completion(
                    text=(choice.get("message") or {}).get("content") or "",
                    prompt_tokens=usage.get("prompt_tokens", 0),
                    completion_tokens=usage.get("completion_tokens", 0),
                    finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
                )

    async def _run(
        self, requests: list[ChatRequest], params: SamplingParams, seeds: list[int]
    ) -> list[Completion]:
        import httpx

        sem = asyncio.Semaphore(self.config.concurrency)
        limits = httpx.Limits(max_connections=self.config.concurrency * len(self.urls))
        timeout = httpx.Timeout(self.config.timeout_s)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            return list(
                await asyncio.gather(
                    *(self._one(client, sem, r, params, s) for r, s in zip(requests, seeds))
                )
            )

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
            return asyncio.run(run)
        # Called from inside an event loop (a notebook): run ours in a worker thread.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, run).result()
