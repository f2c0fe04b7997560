"""LLM backends behind one interface, the durable store and the engine that ties them."""

from __future__ import annotations

from gravity.errors import GravityError
from gravity.llm.base import Backend, ChatRequest, Completion, Message, SamplingParams
from gravity.llm.config import BackendConfig
from gravity.llm.hf import TransformersBackend
from gravity.llm.llamacpp import LlamaCppBackend
from gravity.llm.openai_compat import OpenAIBackend
from gravity.llm.vllm_backend import VLLMBackend

BACKENDS: dict[str, type[Backend]] = {
    "transformers": TransformersBackend,
    "llamacpp": LlamaCppBackend,
    "openai": OpenAIBackend,
    "vllm": VLLMBackend,
}


def make_backend(config: BackendConfig) -> Backend:
    """Instantiate the backend ``config.backend`` names (not loaded yet)."""
    try:
        cls = BACKENDS[config.backend]
    except KeyError:
        raise GravityError(
            f"unknown backend '{config.backend}'; valid: {', '.join(BACKENDS)}"
        ) from None
    return cls(config)


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendConfig",
    "ChatRequest",
    "Completion",
    "Message",
    "SamplingParams",
    "make_backend",
]
