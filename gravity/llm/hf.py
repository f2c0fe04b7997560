"""``transformers`` backend (the default): any local checkpoint, hub id, LoRA adapter or the
embedded model, batched generation with left padding, CPU or GPU."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gravity.errors import GravityError
from gravity.llm.base import (
    Backend,
    ChatRequest,
    Completion,
    SamplingParams,
    request_seeds,
    weights_fingerprint,
)
from gravity.llm.config import BackendConfig
from gravity.llm.embedded import embedded_checkpoint, is_embedded

log = logging.getLogger(__name__)


def resolve_model(model: str) -> str:
    """A loadable name: the embedded checkpoint path, a local directory, or a hub id as given."""
    if is_embedded(model):
        return str(embedded_checkpoint())
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise GravityError(f"model '{model}' is a file; transformers needs a model directory")
        return str(path.resolve())
    if model.startswith((".", "/", "~")):
        raise GravityError(f"model directory '{model}' does not exist")
    return model  # a hub id: loaded from the local cache (hubs are not reachable offline)


def adapter_base(path: str) -> str | None:
    """The base model of a PEFT adapter directory, or None when ``path`` is a full model."""
    config = Path(path) / "adapter_config.json"
    if not config.is_file():
        return None
    base = json.loads(config.read_text())["base_model_name_or_path"]
    return resolve_model(base)


def load_model_and_tokenizer(model: str, dtype: str = "auto", device: str = "auto") -> tuple:
    """Load a causal LM (merging a LoRA adapter into its base) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = resolve_model(model)
    base = adapter_base(path)
    torch_dtype = {
        "auto": torch.bfloat16,
        "float32": torch.float32,
        "bfloat16": torch.bfloat16,
        "float16": torch.float16,
    }[dtype]
    try:
        lm = AutoModelForCausalLM.from_pretrained(base or path, dtype=torch_dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        raise GravityError(f"cannot load model '{model}': {exc}") from None
    if base is not None:
        try:
            from peft import PeftModel
        except ImportError:
            from gravity.errors import MissingDependencyError

            raise MissingDependencyError("loading a LoRA adapter", "train", "peft") from None
        lm = PeftModel.from_pretrained(lm, path).merge_and_unload()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    lm.to(device).eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return lm, tokenizer


class TransformersBackend(Backend):
    """Batched ``model.generate`` with left padding; JSON is prompted for, then validated."""

    name = "transformers"
    constrains_json = False

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.model: Any = None
        self.tokenizer: Any = None
        self._path: str | None = None

    def load(self) -> None:
        if self._loaded:
            return
        self.model, self.tokenizer = load_model_and_tokenizer(
            self.config.model, self.config.dtype, self.config.device
        )
        self._path = resolve_model(self.config.model)
        self._loaded = True

    def close(self) -> None:
        self.model = self.tokenizer = None
        super().close()

    def fingerprint(self) -> dict[str, Any]:
        path = Path(resolve_model(self.config.model))
        revision = (
            weights_fingerprint(path) if path.is_dir() else (self.config.model_revision or "main")
        )
        name = "smollm2-135m-instruct" if is_embedded(self.config.model) else self.config.model
        return {
            "backend": self.name,
            "model": name,
            "revision": revision,
            "dtype": self.config.dtype,
        }

    def generate(
        self,
        requests: list[ChatRequest],
        params: SamplingParams,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        import torch

        self.load()
        tok = self.tokenizer
        texts = [
            tok.apply_chat_template(r.as_dicts(), tokenize=False, add_generation_prompt=True)
            for r in requests
        ]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(self.model.device)
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "pad_token_id": tok.pad_token_id,
        }
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=tok)
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(_batch_seed(request_seeds(len(requests), params, seeds)))
            out = self.model.generate(**enc, **kwargs)
        new_tokens = out[:, enc["input_ids"].shape[1] :]
        eos_ids = set(_as_list(self.model.generation_config.eos_token_id)) | {tok.eos_token_id}
        results = []
        for row, mask in zip(new_tokens.tolist(), enc["attention_mask"].tolist()):
            n = 0
            hit_eos = False
            for token in row:
                if token in eos_ids:
                    hit_eos = True
                    break
                n += 1
            text = tok.decode(row[:n], skip_special_tokens=True)
            text, stopped = _cut_at_stop(text, params.stop)
            finish = (
                "stop"
                if hit_eos or stopped
                else ("length" if n >= params.max_new_tokens else "stop")
            )
            results.append(
                Completion(
                    text=text, prompt_tokens=sum(mask), completion_tokens=n, finish_reason=finish
                )
            )
        return results

    def score_labels(
        self, requests: list[ChatRequest], labels: list[str]
    ) -> list[dict[str, float]]:
        """Log-probability of each label as the start of the assistant's answer, per request.

        When every label is one distinct token (``A``, ``B``, ``1``..``5``), one forward pass over
        the batch reads them all from the next-token distribution; otherwise each label's tokens
        are scored after the prompt (one pass per label).
        """
        import torch

        self.load()
        tok = self.tokenizer
        prompts = [
            tok(
                tok.apply_chat_template(r.as_dicts(), tokenize=False, add_generation_prompt=True),
                add_special_tokens=False,
            )["input_ids"]
            for r in requests
        ]
        label_ids = [tok(label, add_special_tokens=False)["input_ids"] for label in labels]
        if any(not ids for ids in label_ids):
            raise ValueError(f"labels {labels} include one with no tokens")
        firsts = [ids[0] for ids in label_ids]
        single = all(len(ids) == 1 for ids in label_ids) and len(set(firsts)) == len(firsts)
        sequences = [prompts] if single else [[p + ids for p in prompts] for ids in label_ids]
        per_label: list[list[float]] = []
        with torch.inference_mode():
            for k, batch in enumerate(sequences):
                n = 1 if single else len(label_ids[k])
                logprobs = self._last_logprobs(batch, n + 1)  # (batch, n + 1, vocab)
                if single:
                    last = logprobs[:, -1, :]
                    per_label = [last[:, t].tolist() for t in firsts]
                    break
                ids = label_ids[k]
                # Position -1-n predicts the label's first token; the last position predicts
                # nothing of the label (it follows it).
                steps = logprobs[:, -1 - n : -1, :]
                target = torch.tensor(ids, device=steps.device).expand(steps.shape[0], n)
                per_label.append(steps.gather(2, target.unsqueeze(-1)).sum(dim=(1, 2)).tolist())
        return [
            {label: float(per_label[j][i]) for j, label in enumerate(labels)}
            for i in range(len(requests))
        ]

    def _last_logprobs(self, batch: list[list[int]], keep: int) -> Any:
        """Log-softmax over the vocabulary at the last ``keep`` positions of left-padded
        ``batch`` (only those logits are computed: a full vocabulary row per token is large)."""
        import torch

        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch])
        # Positions count real tokens only, so a padded row scores as it would alone.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        device = self.model.device
        logits = self.model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            logits_to_keep=keep,
        ).logits
        return torch.log_softmax(logits.float(), dim=-1)


def _batch_seed(seeds: list[int]) -> int:
    """One generator seed for a batch: its single seed, or a hash of all of them."""
    if len(set(seeds)) == 1:
        return seeds[0]
    digest = hashlib.sha256(",".join(map(str, seeds)).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    cuts = [text.index(s) for s in stops if s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)
