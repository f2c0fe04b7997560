"""``vllm`` backend: in-process ``vllm.LLM`` for GPU machines.

Prefix caching is on (prompts for one reader share a long profile prefix); JSON schemas go
through vLLM's structured outputs. vLLM cannot be installed on the CPU machines gravity is
developed on, so this module is written against vLLM's public API (``LLM``, ``LLM.chat``,
``SamplingParams``, ``StructuredOutputsParams``) and its tests are marked ``gpu``.

Each request gets its own ``SamplingParams(seed=...)``, so vLLM draws its tokens from a generator
of its own, whatever else is scheduled with it. vLLM's arithmetic is not batch-invariant by
default; its ``VLLM_BATCH_INVARIANT=1`` makes it so on recent NVIDIA GPUs (vLLM's documentation).
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

from gravity.errors import MissingDependencyError
from gravity.llm.base import Backend, ChatRequest, Completion, SamplingParams, request_seeds
from gravity.llm.config import BackendConfig
from gravity.llm.hf import resolve_model


def stop_engine(llm: Any) -> None:
    """Stop the engine core of an in-process ``vllm.LLM`` (vLLM V1 runs it in a process of
    its own, which holds the weights and KV cache): ``llm.llm_engine.engine_core.shutdown()``."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if callable(getattr(core, "shutdown", None)):
        core.shutdown()


def free_gpu_memory() -> None:
    """What vLLM keeps after its ``LLM`` is gone: ``vllm.distributed.
    cleanup_dist_env_and_memory()`` (vLLM's documented clean-up: destroys the model-parallel
    groups and the process group, collects garbage, empties the CUDA cache); without it (older
    vLLM) garbage collection and ``torch.cuda.empty_cache()``."""
    try:
        from vllm.distributed import cleanup_dist_env_and_memory
    except ImportError:
        cleanup_dist_env_and_memory = None
    if cleanup_dist_env_and_memory is not None:
        cleanup_dist_env_and_memory()
        return
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class VLLMBackend(Backend):
    """Batches go to ``LLM.chat`` whole; vLLM schedules them."""

    name = "vllm"
    constrains_json = True

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.llm: Any = None

    def load(self) -> None:
        if self._loaded:
            return
        try:
            from vllm import LLM
        except ImportError:
            raise MissingDependencyError("the vllm backend (GPU only)", "vllm") from None
        kwargs: dict[str, Any] = {
            "model": resolve_model(self.config.model),
            "tensor_parallel_size": self.config.tensor_parallel_size,
            "gpu_memory_utilization": self.config.gpu_memory_utilization,
            "enable_prefix_caching": True,
        }
        if self.config.model_revision:
            kwargs["revision"] = self.config.model_revision
        if self.config.max_model_len:
            kwargs["max_model_len"] = self.config.max_model_len
        if self.config.dtype != "auto":
            kwargs["dtype"] = self.config.dtype
        self.llm = LLM(**kwargs)
        self._loaded = True

    def close(self) -> None:
        """Free the GPU memory the engine holds, so the next stage can load a model: stop the
        engine core, drop the last reference to the ``LLM``, then release what vLLM keeps
        beyond it. ``del llm`` alone frees nothing that the engine process holds."""
        llm, self.llm = self.llm, None
        if llm is not None:
            stop_engine(llm)
            del llm
            free_gpu_memory()
        super().close()

    def fingerprint(self) -> dict[str, Any]:
        from gravity.llm.hf import TransformersBackend

        info = TransformersBackend(self.config).fingerprint()
        return {**info, "backend": self.name}

    def generate(
        self,
        requests: list[ChatRequest],
        params: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        from vllm import SamplingParams as VSamplingParams

        self.load()
        kwargs: dict[str, Any] = {
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stop": list(params.stop) or None,
        }
        if params.json_schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = StructuredOutputsParams(json=params.json_schema)
        per_request = [
            VSamplingParams(**kwargs, seed=seed)
            for seed in request_seeds(len(requests), params, seeds)
        ]
        outputs = self.llm.chat([r.as_dicts() for r in requests], per_request, use_tqdm=False)
        results = []
        for out in outputs:
            best = out.outputs[0]
            results.append(
                Completion(
                    text=best.text,
                    prompt_tokens=len(out.prompt_token_ids or []),
                    completion_tokens=len(best.token_ids),
                    finish_reason="length" if best.finish_reason == "length" else "stop",
                )
            )
        return results
