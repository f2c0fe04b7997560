"""The one Jinja environment: sandboxed, strict, loading templates from ``prompts/``.

Profile text is data: values are inserted, never evaluated, so ``{{ 7*7 }}`` inside a favourite
book title comes out literally. Every template begins with a comment listing its variables.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from gravity.errors import GravityError
from gravity.resources import prompts_dir


def level(score: float | None, low: float, high: float) -> str:
    """Word for where ``score`` sits in [low, high]: very low .. very high."""
    if score is None:
        return "unknown"
    frac = (score - low) / (high - low)
    for bound, word in ((0.2, "very low"), (0.4, "low"), (0.6, "moderate"), (0.8, "high")):
        if frac < bound:
            return word
    return "very high"


def humanize(name: str) -> str:
    """``self_direction`` -> ``self-direction``."""
    return name.replace("_", "-")


@lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    """The shared sandboxed environment (StrictUndefined, no autoescape: output is plain text)."""
    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(prompts_dir())),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
    )
    env.filters["level"] = level
    env.filters["humanize"] = humanize
    return env


def template_names() -> list[str]:
    """All shipped template names."""
    return sorted(environment().list_templates(extensions=["j2"]))


def render(name: str, **variables: Any) -> str:
    """Render template ``name`` with ``variables``; blank-line runs are collapsed."""
    try:
        template = environment().get_template(name)
    except TemplateNotFound:
        raise GravityError(
            f"prompt template '{name}' not found; available: {', '.join(template_names())}"
        ) from None
    return _tidy(template.render(**variables))


@lru_cache(maxsize=256)
def _compiled(source: str, filename: str) -> Any:
    try:
        return environment().from_string(source)
    except TemplateSyntaxError as exc:
        raise GravityError(
            f"{filename}:{exc.lineno}: template syntax error: {exc.message}"
        ) from None


def render_source(source: str, filename: str, **variables: Any) -> str:
    """Render a template given by its source (a task's template, read from ``filename``) in
    the one environment; blank-line runs are collapsed as in ``render``."""
    return _tidy(_compiled(source, filename).render(**variables))


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out)


def template_hash(name: str) -> str:
    """sha256 (first 16 hex) of a template's source: part of cache keys and record metadata."""
    source = (prompts_dir() / name).read_bytes()
    return hashlib.sha256(source).hexdigest()[:16]
