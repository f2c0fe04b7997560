"""A scripted backend for fast orchestration tests of the engine (never the only test of a stage:
real backends are tested in test_backends.py)."""

from __future__ import annotations

import hashlib
import json
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
            text = (
                self.script.pop(0)
                if self.script
                else self._text(request.messages[-1].content, seed)
            )
            out.append(
                Completion(
                    text=text,
                    prompt_tokens=len(request.messages[-1].content.split()),
                    completion_tokens=len(text.split()),
                )
            )
        return out

    def _text(self, prompt: str, seed: int) -> str:
        digest = hashlib.sha256(f"{prompt}|{seed}".encode()).hexdigest()[:8]
        return f"echo:{prompt[:40]}:{digest}"


WORDS = [
    "river",
    "lantern",
    "harvest",
    "quiet",
    "journey",
    "letters",
    "courage",
    "winter",
    "market",
    "garden",
    "voices",
    "history",
    "family",
    "mountain",
    "promise",
    "stranger",
    "music",
    "honour",
    "silence",
    "dream",
]


class WriterBackend(ScriptedBackend):
    """Plausible outputs for the synthesis prompts: a scenario, a description whose words depend
    on the prompt (so chosen and rejected differ), or a verdict for the quality judge."""

    def __init__(self, delay_s: float = 0.0, overrides: dict[str, str] | None = None) -> None:
        super().__init__(delay_s=delay_s)
        self.overrides = overrides or {}  # substring of the prompt -> forced output

    def _text(self, prompt: str, seed: int) -> str:
        digest = hashlib.sha256(f"{prompt}|{seed}".encode()).digest()
        forced = next((v for k, v in self.overrides.items() if k in prompt), None)
        if forced is not None:
            return forced
        if "is better written and more informative" in prompt:  # any task's quality judge
            # A consistent judge: prefers the description that sorts last, in either order.
            a = prompt.split("Description A:")[1].split("Description B:")[0].strip()
            b = prompt.split("Description B:")[1].rsplit("\n\nWhich", 1)[0].strip()
            return json.dumps({"choice": "A" if a > b else "B"})
        if '"choice" is the letter' in prompt:  # a persona judge (any task)
            return json.dumps({"choice": "AB"[digest[0] % 2]})
        if '"choice" is that number' in prompt:  # an interestingness rating
            return json.dumps({"choice": str(1 + digest[0] % 5)})
        if "describe a concrete situation" in prompt:
            return "The reader is choosing a gift and wonders whether the story fits them."
        words = [WORDS[b % len(WORDS)] for b in digest[:24]]
        return " ".join(words).capitalize() + "."


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child Python process that imports this checkout's gravity: the
    repository first on PYTHONPATH, any path the environment already needs kept after it
    (packages installed with --target), models offline; ``extra`` variables added."""
    import os
    from pathlib import Path

    repo = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path, **extra}
