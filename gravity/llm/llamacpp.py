"""``llamacpp`` backend: GGUF inference through llama-cpp-python (fast on CPU).

The model runs in a worker process (``gravity.llm.worker``): a crash in llama.cpp's native code
becomes a one-line error naming the signal, and the completions already made are kept. The
worker loads the model once and serves every batch until ``close()``.

llama.cpp's "extra buffer types" (weight repacking into CPU-specific layouts, among them its AMX
kernels) are turned off: on some virtualized AMX CPUs the AMX repacking segfaults on the first
decode, whatever the build. JSON schemas are enforced by llama.cpp's grammar-constrained decoding.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from collections.abc import Iterator, Sequence
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
from gravity.llm.worker import Worker, WorkerDied

# Test hook: the worker crashes with a real SIGSEGV (a native null-pointer read) after this many
# completions. Used by the crash-isolation tests only.
CRASH_AFTER_ENV = "GRAVITY_LLAMACPP_CRASH_AFTER"


def resolve_gguf(model: str) -> Path:
    """The GGUF file for ``model``: the embedded one, or a given .gguf path."""
    if is_embedded(model):
        return embedded_gguf()
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path
    raise GravityError(f"llamacpp backend needs a .gguf file or 'smollm2'; got '{model}'")


def safe_llama_class() -> type:
    """``llama_cpp.Llama`` whose model params have ``use_extra_bufts`` off.

    ``Llama(...)`` has no keyword for it; its constructor builds ``self.model_params`` and loads
    the model from it in one go, so the subclass intercepts that assignment.
    """
    import llama_cpp

    if "use_extra_bufts" not in dict(llama_cpp.llama_model_params._fields_):
        raise GravityError(
            f"llama-cpp-python {llama_cpp.__version__} is too old (no use_extra_bufts): "
            "pip install 'gravity[llamacpp]' (see the README's llama.cpp build note)"
        )

    class SafeLlama(llama_cpp.Llama):
        @property
        def model_params(self) -> Any:
            return self._safe_model_params

        @model_params.setter
        def model_params(self, params: Any) -> None:
            params.use_extra_bufts = False
            self._safe_model_params = params

    return SafeLlama


class LlamaCppWorker:
    """The worker side: one ``Llama`` instance; requests run one after another."""

    def __init__(self) -> None:
        self.llm: Any = None
        self.done = 0  # completions made by this process (for the crash test hook)
        self.crash_after = int(os.environ.get(CRASH_AFTER_ENV, "0") or 0)

    def handle(self, message: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """``load`` -> one reply with the build and params used; ``generate`` -> one reply per
        request, as each completes."""
        if message["op"] == "load":
            yield self._load(**message["args"])
        elif message["op"] == "generate":
            params = SamplingParams(**message["params"])
            for messages, seed in zip(message["requests"], message["seeds"]):
                yield self._complete(messages, params, seed).model_dump()
        else:
            raise ValueError(f"unknown op {message['op']!r}")

    def _load(self, model_path: str, n_ctx: int, n_threads: int) -> dict[str, Any]:
        import llama_cpp

        # n_threads_batch (prompt processing) follows n_threads: llama-cpp-python would use every
        # core for prompts whatever n_threads says.
        self.llm = safe_llama_class()(
            model_path=model_path,
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            verbose=False,
        )
        return {
            "use_extra_bufts": bool(self.llm.model_params.use_extra_bufts),
            "system_info": llama_cpp.llama_print_system_info().decode(errors="replace"),
            "version": llama_cpp.__version__,
        }

    def _complete(self, messages: list[dict], params: SamplingParams, seed: int) -> Completion:
        if self.crash_after and self.done >= self.crash_after:
            ctypes.string_at(0)  # a real segmentation fault in native code
        self.done += 1
        kwargs: dict[str, Any] = {
            "messages": messages,
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
        try:
            out = self.llm.create_chat_completion(**kwargs)
        except ValueError as exc:
            # llama-cpp-python's answer to a request it cannot run (a prompt over the context):
            # this request fails, the others go on.
            return Completion(text="", finish_reason="error", error=str(exc))
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Completion(
            text=choice["message"]["content"] or "",
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        )


class LlamaCppBackend(Backend):
    """A GGUF model served by one llama.cpp worker process."""

    name = "llamacpp"
    constrains_json = True

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.worker: Worker | None = None
        self.info: dict[str, Any] = {}  # what the worker loaded: params used, build's system info

    def load(self) -> None:
        if self._loaded and self.worker is not None and self.worker.alive:
            return
        if importlib.util.find_spec("llama_cpp") is None:
            raise MissingDependencyError("the llamacpp backend", "llamacpp", "llama-cpp-python")
        path = resolve_gguf(self.config.model)
        self.worker = Worker(self.name, "gravity.llm.llamacpp:LlamaCppWorker")
        args = {
            "model_path": str(path),
            "n_ctx": self.config.n_ctx,
            "n_threads": self.config.n_threads or os.cpu_count() or 1,
        }
        (self.info,) = self.worker.request(
            {"op": "load", "args": args}, 1, f"while loading {path.name}"
        )
        self._loaded = True

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
        self.worker = None
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
        assert self.worker is not None
        message = {
            "op": "generate",
            "requests": [r.as_dicts() for r in requests],
            "params": params.model_dump(mode="json"),
            "seeds": request_seeds(len(requests), params, seeds),
        }
        results: list[Completion] = []
        doing = f"during a batch of {len(requests)} requests"
        try:
            for reply in self.worker.request(message, len(requests), doing):
                results.append(Completion(**reply))
        except WorkerDied as exc:
            self._loaded = False
            raise WorkerDied(
                f"{exc} (after {len(results)} of them; completions made so far are kept, "
                "a rerun continues from there)",
                results,
            ) from None
        return results
