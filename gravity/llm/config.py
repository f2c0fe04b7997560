"""Backend configuration: one flat model, fields grouped by the backends that read them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

BackendName = Literal["transformers", "llamacpp", "openai", "vllm"]
"""The backends ``gravity.llm.make_backend`` knows (the keys of ``gravity.llm.BACKENDS``)."""


class BackendConfig(BaseModel):
    """Which model answers, and how. Every field is a YAML key and (derived from its name) a
    CLI flag."""

    model_config = ConfigDict(extra="forbid")

    backend: BackendName = Field(
        default="transformers",
        description="transformers (in process), llamacpp (GGUF, in process), openai (any "
        "OpenAI-compatible server), vllm (in process, GPU).",
    )
    model: str = Field(
        default="smollm2",
        description="'smollm2' (the embedded default), a local directory, a .gguf file "
        "(llamacpp), a hub id, or the served model name (openai).",
    )
    model_revision: str | None = Field(
        default=None, description="Hub revision; for servers, a label of the weights served."
    )
    # transformers
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="'auto': float32 on CPU (bf16 is slower there, as measured), bfloat16 on GPU.",
    )
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    batch_size: int = Field(default=16, ge=1, description="Requests per forward batch.")
    # llamacpp
    n_ctx: int = Field(default=4096, ge=256, description="Context window in tokens (llamacpp).")
    n_threads: int | None = Field(
        default=None, ge=1, description="CPU threads (llamacpp); default: all cores."
    )
    # openai
    base_urls: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8000/v1"],
        description="One or more OpenAI-compatible base URLs; requests are spread across them.",
    )
    api_key_env: str = Field(
        default="OPENAI_API_KEY", description="Environment variable holding the API key."
    )
    concurrency: int = Field(
        default=8, ge=1, description="Requests in flight at once per server (openai backend)."
    )
    timeout_s: float = Field(default=120.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(default=4, ge=0, description="Retries on 429/5xx/connection errors.")
    json_mode: Literal["json_schema", "json_object", "prompt"] = Field(
        default="json_schema",
        description="How a JSON schema is sent: OpenAI/vLLM 'json_schema', llama.cpp server "
        "'json_object' (+schema), or 'prompt' (no constraint, validated afterwards).",
    )
    # vllm
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs one model spans (vllm).")
    gpu_memory_utilization: float = Field(
        default=0.85, gt=0, le=1, description="Share of GPU memory vLLM may take (vllm)."
    )
    max_model_len: int | None = Field(
        default=None, ge=256, description="Context length (vllm); default: the model's."
    )
