"""The synthesis stage: profile-grounded (or naive) preference pairs."""

from __future__ import annotations

from pathlib import Path

from gravity.books import load_catalog
from gravity.llm import make_backend
from gravity.llm.engine import Engine
from gravity.lock import folder_lock
from gravity.profiles.models import UserProfile
from gravity.store import Store
from gravity.synth.config import FilterConfig, GenerateConfig
from gravity.synth.pipeline import Synthesizer, SynthResult, check_requirements, write_run
from gravity.taskspec import load_task

STORE_NAME = "store.sqlite"


def synthesize(
    profiles: list[UserProfile],
    cfg: GenerateConfig,
    out_dir: Path,
    use_cache: bool = True,
    progress: bool = True,
    engine: Engine | None = None,
) -> SynthResult:
    """Run the synthesis for ``profiles`` and write the run folder ``out_dir``.

    Inputs (catalog, profiles, config) are validated before anything is created.
    """
    task = load_task(cfg.task)
    catalog = load_catalog(cfg.catalog, task)
    if not profiles:
        from gravity.errors import GravityError

        raise GravityError("no profiles to generate pairs for")
    check_requirements(cfg)
    # One writer per folder; a folder this call creates is removed again if loading fails.
    with folder_lock(out_dir, "output folder"):
        if engine is not None:
            result = Synthesizer(cfg, engine, task).run(profiles, catalog)
        else:
            # Loading the model first: a bad backend or model name fails before anything is
            # written.
            with make_backend(cfg.backend) as backend, Store(out_dir / STORE_NAME) as store:
                engine = Engine(backend, store, use_cache=use_cache, progress=progress)
                result = Synthesizer(cfg, engine, task).run(profiles, catalog)
        write_run(out_dir, cfg, result)
    return result


__all__ = ["FilterConfig", "GenerateConfig", "SynthResult", "synthesize"]
