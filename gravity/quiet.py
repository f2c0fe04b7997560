"""Keep third-party noise out of gravity's normal output.

transformers, datasets, huggingface_hub, TRL and torch print deprecation warnings, progress bars
("Creating parquet from Arrow format", GGUF conversion) and informational logs that drown
gravity's own progress lines. ``quiet_third_party()`` silences them for this process (and the
processes it starts, through the environment); ``gravity --verbose`` leaves them on.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

# Libraries whose warnings and logs are theirs, not gravity's.
_LIBRARIES = (
    "transformers",
    "datasets",
    "huggingface_hub",
    "trl",
    "peft",
    "accelerate",
    "torch",
    "sentence_transformers",
    "gguf",
    "httpx",
    "filelock",
    "urllib3",
)

# Read by the libraries when they are imported (here or in a child process).
_ENVIRONMENT = {
    "TRANSFORMERS_VERBOSITY": "error",
    "DATASETS_VERBOSITY": "error",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONWARNINGS": "ignore::FutureWarning,ignore::UserWarning,ignore::DeprecationWarning",
}


def quiet_third_party() -> None:
    """Silence third-party warnings, logs and progress bars; gravity's own output stays."""
    for name, value in _ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    for library in _LIBRARIES:
        warnings.filterwarnings("ignore", category=UserWarning, module=rf"{library}(\.|$)")
        logging.getLogger(library).setLevel(logging.ERROR)
    # Libraries imported before this call read their settings already: tell them directly.
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
