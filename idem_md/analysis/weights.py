"""Importance weights: log weights, self-normalised weights, reweighted means, ESS and log Z.

For proposal samples ``x_i ~ q`` of an unnormalised target ``p~`` (``log p~ = -E/kT``), all in log space.
Log densities in nats; the ESS is dimensionless.

Examples
--------
>>> import numpy as np
>>> round(effective_sample_size(np.log([1.0, 1.0, 2.0])), 4)  # (sum w)^2 / (N sum w^2) = 16 / 18
0.8889
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._records import Record
from ._arrays import _as_array

__all__ = ['effective_sample_size', 'log_importance_weights', 'importance_weights', 'reweighted_mean', 'importance_sampling_summary', 'ImportanceSummary']


def effective_sample_size(log_weights: Any) -> float:
    r"""Normalised effective sample size of importance weights, ``1 / (N sum_i w_i^2)``.

    ``w = softmax(log_weights)`` (normalised to sum 1), computed in log space:
    ``log sum w^2 = logsumexp(2 l) - 2 logsumexp(l)``. Weights of ``-inf`` are
    allowed (zero weight) as long as one is finite. Dimensionless, in
    ``[1/N, 1]``: 1 for equal weights, ``1/N`` for a single dominant weight.
    """
    from scipy.special import logsumexp

    lw = _as_array(log_weights, "log_weights", allow_neg_inf=True)
    if lw.ndim != 1:
        raise ValueError(f"log_weights must be one-dimensional (N,), got shape {tuple(lw.shape)}")
    if not np.isfinite(lw).any():
        raise ValueError("log_weights are all -inf: every weight is zero")
    log_sum_sq = logsumexp(2 * lw) - 2 * logsumexp(lw)
    ess = math.exp(-math.log(len(lw)) - log_sum_sq)
    return float(min(max(ess, 1.0 / len(lw)), 1.0))  # clip round-off just outside [1/N, 1]


def log_importance_weights(log_p_unnorm: Any, log_q: Any) -> np.ndarray:
    r"""Unnormalised log importance weights ``log w_i = log p~(x_i) - log q(x_i)``, ``(N,)`` float64.

    Parameters
    ----------
    log_p_unnorm : array or tensor
        ``(N,)`` unnormalised target log density at the proposal samples, e.g.
        ``-E(x)/kT``; ``-inf`` (zero target density) is allowed.
    log_q : array or tensor
        ``(N,)`` normalised proposal log density at the same samples (finite).
    """
    lp = _as_float_1d(log_p_unnorm, "log_p_unnorm", allow_neg_inf=True)
    lq = _as_float_1d(log_q, "log_q")
    if lp.shape != lq.shape:
        raise ValueError(f"log_p_unnorm and log_q must have the same shape (N,), got {lp.shape} and {lq.shape}")
    return lp - lq


def importance_weights(log_p_unnorm: Any, log_q: Any) -> np.ndarray:
    r"""Self-normalised importance weights ``w_i = \tilde w_i / \sum_j \tilde w_j``, ``(N,)`` summing to 1.

    ``\tilde w_i = p~(x_i) / q(x_i)`` for samples ``x_i ~ q``, computed in log
    space (a softmax of :func:`log_importance_weights`), so that energies of
    thousands of ``kT`` neither overflow nor underflow to all zeros.
    """
    lw = log_importance_weights(log_p_unnorm, log_q)
    return _softmax(lw)


def reweighted_mean(values: Any, log_w: Any) -> float:
    r"""Self-normalised importance-sampling estimate ``\sum_i w_i f(x_i)`` with ``w = softmax(log_w)``.

    Parameters
    ----------
    values : array or tensor
        ``(N,)`` values ``f(x_i)`` at the proposal samples (finite).
    log_w : array or tensor
        ``(N,)`` unnormalised log weights (``-inf`` allowed).

    Returns
    -------
    float
        Estimate of ``E_p[f]`` in the units of ``values`` (consistent, biased at finite N).
    """
    v = _as_float_1d(values, "values")
    lw = _as_float_1d(log_w, "log_w", allow_neg_inf=True)
    if v.shape != lw.shape:
        raise ValueError(f"values and log_w must have the same shape (N,), got {v.shape} and {lw.shape}")
    return float(np.dot(_softmax(lw), v))


@dataclass(frozen=True)
class ImportanceSummary(Record):
    r"""What :func:`importance_sampling_summary` returns.

    Attributes
    ----------
    ess : float
        Normalised effective sample size ``1 / (N \sum_i w_i^2)`` with self-normalised ``w``
        (in ``[1/N, 1]``, :func:`effective_sample_size`); dimensionless.
    log_Z : float
        ``log (1/N \sum_i \tilde w_i)``, the importance-sampling estimate of ``log \int p~`` (nats).
    reweighted_mean : float or None
        :func:`reweighted_mean` of the ``values`` given (their units), else None.
    """

    ess: float
    log_Z: float
    reweighted_mean: float | None = None


def importance_sampling_summary(log_p_unnorm: Any, log_q: Any, values: Any = None) -> ImportanceSummary:
    r"""ESS, log normalising constant and (optionally) a reweighted mean from proposal samples.

    Examples
    --------
    >>> s = importance_sampling_summary([0.0, 0.0], [0.0, 0.0], values=[1.0, 3.0])
    >>> s.ess, s.log_Z, s.reweighted_mean
    (1.0, 0.0, 2.0)
    """
    from scipy.special import logsumexp

    lw = log_importance_weights(log_p_unnorm, log_q)
    if not np.isfinite(lw).any():
        raise ValueError("every importance weight is zero (log_p_unnorm is -inf at all samples)")
    mean = reweighted_mean(values, lw) if values is not None else None
    return ImportanceSummary(effective_sample_size(lw), float(logsumexp(lw) - math.log(len(lw))), mean)


def _softmax(lw: np.ndarray) -> np.ndarray:
    if not np.isfinite(lw).any():
        raise ValueError("every log weight is -inf: all importance weights are zero")
    w = np.exp(lw - lw[np.isfinite(lw)].max())
    return w / w.sum()


def _as_float_1d(x: Any, name: str, allow_neg_inf: bool = False) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        a = x.detach().cpu().double().numpy()
    else:
        try:
            a = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a real (N,) array or tensor, got {type(x).__name__}") from err
    if a.ndim != 1 or a.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty one-dimensional (N,) array, got shape {a.shape}")
    bad = np.isnan(a) | (np.isposinf(a) if allow_neg_inf else ~np.isfinite(a))
    if bad.any():
        what = "NaN or +inf" if allow_neg_inf else "NaN or infinite"
        raise ValueError(f"{name} contains {what} values ({int(bad.sum())} entries)")
    return a
