"""Length-controlled win rates: what the judge's verdicts say about a system once the length of
its texts is accounted for, with a CI, and a plain statement when length and system cannot be
told apart."""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from gravity.errors import MissingDependencyError

CONFOUNDED_SHARE = 0.95  # a pair whose one system writes longer in >= 95% of cases


def mean_words(words: dict[str, dict[str, int]], systems: Sequence[str]) -> dict[str, float]:
    """Mean description length in words per system, over cases."""
    return {
        s: statistics.fmean(w[s] for w in words.values() if s in w) if words else 0.0
        for s in systems
    }


def length_controlled(
    outcomes: Sequence[Any],
    words: dict[str, dict[str, int]],
    systems: Sequence[str],
    level: float = 0.95,
) -> dict[str, Any]:
    """Length-controlled win rates (AlpacaEval 2 style) from pairwise outcomes.

    Fits ``P(S beats B) = sigmoid(theta_S - theta_B + gamma * tanh(dlen / sd) + delta *
    sign(dlen))`` by an unpenalised binomial GLM (statsmodels; the pair value v in [0, 1] is the
    response, one row per case and pair), where ``dlen`` is S's length minus B's in words and
    ``sd`` the standard deviation of ``dlen``; standard errors are clustered by reader. The
    length-controlled win rate of S over B is ``sigmoid(theta_S - theta_B)``, the predicted win
    rate at equal length, with a 95% CI from the clustered covariance (delta method on the
    log-odds). The sign term follows a judge that prefers the longer text by the same margin
    whatever the difference, which tanh alone cannot.

    Returns ``{"raw", "lc", "lc_ci", "gamma", "pairs", "longer", "confounded", "status"}``:
    ``longer[S][B]`` is the share of cases where S wrote more words than B; ``confounded``
    lists the pairs where that share is at least 95% or at most 5%, so length and system are
    (nearly) the same thing there. ``status`` is ``ok``, or ``not_estimable`` with a
    ``reason`` (length and system collinear, or length alone deciding every verdict) and no
    ``lc``. ``{"pairs": 0}`` without data.
    """
    index = {s: i for i, s in enumerate(systems)}
    rows = []  # (reader, i, j, v, dlen) with i < j
    for o in outcomes:
        for (s, b), v in o.wins.items():
            if s in index and b in index and index[s] < index[b] and o.case_id in words:
                d = words[o.case_id][s] - words[o.case_id][b]
                rows.append((o.reader_id, index[s], index[b], v, d))
    if not rows:
        return {"pairs": 0}
    longer = _longer_shares(rows, systems)
    result: dict[str, Any] = {
        "raw": _raw(outcomes, systems),
        "pairs": len(rows),
        "longer": longer,
        "confounded": [
            [s, b]
            for s, by in longer.items()
            for b, share in by.items()
            if index[s] < index[b]
            and share is not None
            and not 1 - CONFOUNDED_SHARE < share < CONFOUNDED_SHARE
        ],
    }
    fit = _fit(rows, len(systems))
    if isinstance(fit, str):
        return {**result, "status": "not_estimable", "reason": fit, "lc": {}, "lc_ci": {}}
    theta, cov, gamma = fit
    lc, lc_ci = _rates(theta, cov, systems, result["raw"], level)
    return {**result, "status": "ok", "lc": lc, "lc_ci": lc_ci, "gamma": gamma}


def _rates(
    theta: np.ndarray,
    cov: np.ndarray,
    systems: Sequence[str],
    raw: dict[str, dict[str, float]],
    level: float,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[float]]]]:
    """S -> B -> sigmoid(theta_S - theta_B), and its CI (delta method on the log-odds)."""
    z = _norm_ppf(1 - (1 - level) / 2)
    lc: dict[str, dict[str, float]] = {s: {} for s in systems}
    lc_ci: dict[str, dict[str, list[float]]] = {s: {} for s in systems}
    for i, s in enumerate(systems):
        for j, b in enumerate(systems):
            if s == b or b not in raw[s]:
                continue
            c = np.zeros(len(systems))
            c[i], c[j] = 1.0, -1.0
            est, se = float(c @ theta), math.sqrt(max(float(c @ cov @ c), 0.0))
            lc[s][b] = _sigmoid(est)
            lc_ci[s][b] = [_sigmoid(est - z * se), _sigmoid(est + z * se)]
    return lc, lc_ci


def _raw(outcomes: Sequence[Any], systems: Sequence[str]) -> dict[str, dict[str, float]]:
    raw: dict[str, dict[str, float]] = {s: {} for s in systems}
    for s in systems:
        for b in systems:
            vals = [o.wins[(s, b)] for o in outcomes if (s, b) in o.wins] if s != b else []
            if vals:
                raw[s][b] = statistics.fmean(vals)
    return raw


def _longer_shares(rows: list[tuple], systems: Sequence[str]) -> dict[str, dict[str, Any]]:
    """S -> B -> share of the pair's cases where S wrote more words (ties count half)."""
    shares: dict[str, dict[str, Any]] = {s: {} for s in systems}
    for i, s in enumerate(systems):
        for j, b in enumerate(systems):
            if i < j:
                ds = [d for _, a, c, _, d in rows if (a, c) == (i, j)]
                share = sum((d > 0) + 0.5 * (d == 0) for d in ds) / len(ds) if ds else None
                shares[s][b] = share
                shares[b][s] = None if share is None else 1 - share
    return shares


def _design(rows: list[tuple], n_systems: int) -> tuple[np.ndarray, int] | str:
    """(design matrix: the length columns that vary, then systems 1.. as +1/-1 contrasts;
    number of length columns), or why the systems cannot be separated from length."""
    d = np.array([r[4] for r in rows], dtype=float)
    sd = float(np.std(d)) or 1.0
    length = [c for c in (np.tanh(d / sd), np.sign(d)) if np.any(c)]
    kept: list[np.ndarray] = []
    for c in length:  # tanh and sign coincide when every difference is large
        if np.linalg.matrix_rank(np.column_stack([*kept, c])) > len(kept):
            kept.append(c)
    systems = np.zeros((len(rows), n_systems - 1))
    for k, (_, i, j, _, _) in enumerate(rows):
        if i:
            systems[k, i - 1] = 1.0
        systems[k, j - 1] = -1.0
    x = np.column_stack([*kept, systems]) if kept else systems
    if np.linalg.matrix_rank(x) < x.shape[1]:
        return (
            "length and system are confounded: the length differences are a function of "
            "which systems are compared, so no win rate at equal length can be estimated"
        )
    return x, len(kept)


def _fit(rows: list[tuple], n_systems: int) -> tuple[np.ndarray, np.ndarray, float] | str:
    """(theta with theta_0 = 0, its covariance, gamma + delta) or why there is no fit."""
    try:
        import statsmodels.api as sm
    except ImportError:
        raise MissingDependencyError(
            "the length-controlled win rate", "eval", "statsmodels"
        ) from None
    design = _design(rows, n_systems)
    if isinstance(design, str):
        return design
    x, n_length = design
    y = np.array([r[3] for r in rows], dtype=float)
    readers = {r: k for k, r in enumerate(sorted({r[0] for r in rows}))}
    groups = np.array([readers[r[0]] for r in rows])
    cov_type = "cluster" if len(readers) > 1 else "HC0"
    kwds = {"groups": groups} if cov_type == "cluster" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # separation is judged from the fit below
        try:
            fit = sm.GLM(y, x, family=sm.families.Binomial()).fit(
                cov_type=cov_type, cov_kwds=kwds, maxiter=200
            )
        except (ValueError, np.linalg.LinAlgError, ArithmeticError) as exc:
            return f"the model could not be fitted ({exc})"
    params, cov = np.asarray(fit.params), np.asarray(fit.cov_params())
    if not fit.converged or not np.all(np.isfinite(cov)) or np.max(np.abs(params)) > 15:
        return (
            "the verdicts are perfectly separated (length, or a system, decides every one), "
            "so the fit has no finite estimate"
        )
    theta = np.concatenate([[0.0], params[n_length:]])
    full = np.zeros((n_systems, n_systems))
    full[1:, 1:] = cov[n_length:, n_length:]
    return theta, full, float(params[:n_length].sum())


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def _norm_ppf(q: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(q)
