"""``llamacpp`` backend: in-process GGUF inference through llama-cpp-python (fast on CPU).

JSON schemas are enforced by llama.cpp's grammar-constrained decoding.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gravity.errors import GravityError, MissingDependencyError
from gravity.llm.base import (
    Backend,
    ChatRequest,
    Completion,
    SamplingParams,
    request_seeds,
    weights_fingerprint,
)
from gravity.llm.config import BackendConfig
from gravity.llm.embedded import embedded_gguf, is_embedded


def resolve_gguf(model: str) -> Path:
    """The GGUF file for ``model``: the embedded one, or a given .gguf path."""
    if is_embedded(model):
        return embedded_gguf()
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path
    raise GravityError(f"llamacpp backend needs a .gguf file or 'smollm2'; got '{model}'")


class LlamaCppBackend(Backend):
    """One ``llama_cpp.Llama`` instance; requests run one after another."""

    name = "llamacpp"
    constrains_json = True

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.llm: Any = None

    def load(self) -> None:
        if self._loaded:
            return
        try:
            from llama_cpp import Llama
        except ImportError:
            raise MissingDependencyError(
                "the llamacpp backend", "llamacpp", "llama-cpp-python"
            ) from None
        self.llm = Llama(
            model_path=str(resolve_gguf(self.config.model)),
            n_ctx=self.config.n_ctx,
            n_threads=self.config.n_threads or os.cpu_count(),
            verbose=False,
        )
        self._loaded = True

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
        self.llm = None
        super().close()

    def fingerprint(self) -> dict[str, Any]:
        path = resolve_gguf(self.config.model)
        name = "smollm2-135m-instruct.q4_1.gguf" if is_embedded(self.config.model) else path.name
        return {"backend": self.name, "model": name, "revision": weights_fingerprint(path)}

    def generate(
        self,
        requests: list[ChatRequest],
        params: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        self.load()
        results = []
        for request, seed in zip(requests, request_seeds(len(requests), params, seeds)):
            kwargs: dict[str, Any] = {
                "messages": request.as_dicts(),
                "max_tokens": params.max_new_tokens,
                "temperature": params.temperature,
                "top_p": params.top_p,
                "seed": seed,
                "stop": list(params.stop),
            }
            if params.json_schema is not None:
                kwargs["response_format"] = {"type": "json_object", "schema": params.json_schema}
            # The sampler state is per-instance: reset so each request depends only on its seed.
            self.llm.reset()
            self.llm.set_seed(seed)
            out = self.llm.create_chat_completion(**kwargs)
            choice = out["choices"][0]
            usage = out.get("usage") or {}
            results.append(
                Completion(
                    text=choice["message"]["content"] or "",
                    prompt_tokens=usage.get("prompt_tokens", 0),
                    completion_tokens=usage.get("completion_tokens", 0),
                    finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
                )
            )
        return results
