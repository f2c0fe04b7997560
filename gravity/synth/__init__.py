"""The synthesis stage: profile-grounded (or naive) preference pairs."""

from __future__ import annotations

from collections.abc import Iterable, Sized
from pathlib import Path

from gravity.books import load_catalog
from gravity.llm import make_backend
from gravity.llm.engine import Engine
from gravity.lock import folder_lock
from gravity.profiles.models import UserProfile
from gravity.store import Store
from gravity.synth.config import FilterConfig, GenerateConfig
from gravity.synth.output import RunWriter
from gravity.synth.pipeline import Synthesizer, SynthResult, check_requirements
from gravity.taskspec import load_task

STORE_NAME = "store.sqlite"


def synthesize(
    profiles: Iterable[UserProfile],
    cfg: GenerateConfig,
    out_dir: Path,
    use_cache: bool = True,
    progress: bool = True,
    engine: Engine | None = None,
    keep_records: bool = True,
) -> SynthResult:
    """Run the synthesis for ``profiles`` (a list, or a ``ReaderStream`` for flat memory) and
    write the run folder ``out_dir``; the result holds the records and rejects only with
    ``keep_records`` (the files always do).

    Inputs (catalog, profiles, config) are validated before anything is created. Records are
    appended to the run's files chunk by chunk; the files are renamed into place when the run
    completes (a killed run leaves the previous ones; a rerun reads finished completions back
    from the store).
    """
    task = load_task(cfg.task)
    catalog = load_catalog(cfg.catalog, task)
    if isinstance(profiles, Sized) and not len(profiles):
        from gravity.errors import GravityError

        raise GravityError("no profiles to generate pairs for")
    check_requirements(cfg)
    # One writer per folder; a folder this call creates is removed again if loading fails.
    with folder_lock(out_dir, "output folder"):
        if engine is not None:
            return _run(Synthesizer(cfg, engine, task), profiles, catalog, out_dir, keep_records)
        # Loading the model first: a bad backend or model name fails before anything is
        # written.
        with make_backend(cfg.backend) as backend, Store(out_dir / STORE_NAME) as store:
            engine = Engine(backend, store, use_cache=use_cache, progress=progress)
            return _run(Synthesizer(cfg, engine, task), profiles, catalog, out_dir, keep_records)


def _run(
    synth: Synthesizer,
    profiles: Iterable[UserProfile],
    catalog: list,
    out_dir: Path,
    keep_records: bool,
) -> SynthResult:
    writer = RunWriter(out_dir)
    try:
        result = synth.run(profiles, catalog, writer, keep_records)
        writer.commit(synth.cfg, result.summary)
    except BaseException:
        writer.discard()
        raise
    return result


__all__ = ["FilterConfig", "GenerateConfig", "SynthResult", "synthesize"]
