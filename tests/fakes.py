"""A scripted backend for fast orchestration tests of the engine (never the only test of a stage:
real backends are tested in test_backends.py)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from gravity.llm.base import Backend, ChatRequest, Completion, SamplingParams


class ScriptedBackend(Backend):
    """Answers deterministically from (messages, seed); optional per-batch delay and a script of
    texts returned for the first calls (to simulate malformed output)."""

    name = "scripted"

    def __init__(
        self,
        delay_s: float = 0.0,
        script: list[str] | None = None,
        constrains_json: bool = True,
        model: str = "fake",
    ) -> None:
        super().__init__(config=None)
        self.delay_s = delay_s
        self.script = list(script or [])
        self.constrains_json = constrains_json
        self.model = model
        self.batches: list[int] = []
        self.seen: list[ChatRequest] = []

    def load(self) -> None:
        self._loaded = True

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "revision": "1"}

    def generate(
        self, requests: list[ChatRequest], params: SamplingParams, seeds=None
    ) -> list[Completion]:
        if self.delay_s:
            time.sleep(self.delay_s)
        self.batches.append(len(requests))
        self.seen.extend(requests)
        out = []
        for request, seed in zip(requests, seeds or [params.seed] * len(requests)):
            if self.script:
                text = self.script.pop(0)
            else:
                digest = hashlib.sha256(
                    f"{request.messages[-1].content}|{seed}".encode()
                ).hexdigest()[:8]
                text = f"echo:{request.messages[-1].content[:40]}:{digest}"
            out.append(
                Completion(
                    text=text,
                    prompt_tokens=len(request.messages[-1].content),
                    completion_tokens=len(text.split()),
                )
            )
        return out
