"""Shared fixtures. Tests never reach a model hub: HF_HUB_OFFLINE is forced on."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

from gravity.profiles import UserProfile, load_profiles
from gravity.resources import profiles_dir

EXAMPLES = sorted((profiles_dir() / "examples").glob("*.yaml"))


@pytest.fixture(scope="session")
def example_files() -> list[Path]:
    assert len(EXAMPLES) >= 4
    return EXAMPLES


@pytest.fixture(scope="session")
def example_profiles(example_files: list[Path]) -> list[UserProfile]:
    return [p for f in example_files for p in load_profiles(f)]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random Llama (2 layers, hidden 64) with SmolLM2's tokenizer, saved to disk:
    trains in seconds, so training tests exercise real TRL trainers."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from gravity.llm.embedded import embedded_checkpoint

    source = embedded_checkpoint()
    tokenizer = AutoTokenizer.from_pretrained(source)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def pair_export(tmp_path_factory) -> Path:
    """A small exported preference dataset (hf format) made by the synthesis pipeline with the
    fake writer backend (fast); real-model synthesis is tested in test_synth.py."""
    from gravity.export import export_run
    from gravity.llm.engine import Engine
    from gravity.store import Store
    from gravity.synth import GenerateConfig, synthesize
    from gravity.synth.config import FilterConfig
    from tests.fakes import WriterBackend

    root = tmp_path_factory.mktemp("pairs")
    profiles = [p for f in EXAMPLES for p in load_profiles(f)]
    cfg = GenerateConfig(
        max_items=2,
        facets=["values", "interests"],
        filters=FilterConfig(min_words=5, near_duplicate_threshold=None),
    )
    engine = Engine(WriterBackend(), Store(root / "store.sqlite"), progress=False)
    synthesize(profiles, cfg, root / "run", engine=engine)
    export_run(root / "run", root / "export", "hf", test_size=0.25, seed=0)
    return root / "export"


@pytest.fixture
def no_models(monkeypatch):
    """Every way a stage loads a model fails the test."""

    from gravity.llm import BACKENDS

    def refuse(*_args, **_kwargs):
        raise AssertionError("the dry run loaded a model")

    for cls in BACKENDS.values():
        monkeypatch.setattr(cls, "load", refuse)
    monkeypatch.setattr("gravity.llm.embedded.embedded_checkpoint", refuse)
    monkeypatch.setattr("gravity.llm.hf.embedded_checkpoint", refuse)
    monkeypatch.setattr("gravity.train.train", refuse)
    import transformers

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
