r"""Observables of weighted or resampled sample sets, with error bars.

:func:`estimate` computes the self-normalised average ``sum_i w_i f(x_i)`` of an
observable over samples with (optional) log weights, with a standard error:

* with ``ancestors`` (the initial particle each SMC particle descends from,
  :attr:`idem_md.correct.SMCResult.ancestors`), the genealogy estimator of Chan and
  Lai (2013), ``Var ~ sum_k (sum_{i: a_i = k} W_i (f_i - mean))^2``, which accounts for
  the duplicates that resampling creates;
* otherwise a bootstrap over samples (weights resampled with them), right for
  independent samples and for importance weights, too small for correlated ones
  (MD frames: thin them first).

Observables map positions ``(N, n, d)`` (the energy's length unit) to ``(N,)`` or
``(N, k)`` values; :func:`energy_observable`, :func:`basin_indicator` and
:func:`distance_histogram_observable` build the common ones.

Examples
--------
>>> import torch
>>> x = torch.arange(4.0).reshape(4, 1, 1)
>>> est = estimate(lambda p: p[:, 0, 0], x, log_weights=torch.tensor([0.0, 0.0, 0.0, -1e9]))
>>> round(est.value, 6), est.n_samples
(1.0, 4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .energies.base import Energy
from .metrics import effective_sample_size

__all__ = ["Estimate", "estimate", "energy_observable", "basin_indicator", "distance_histogram_observable"]

Observable = Callable[[torch.Tensor], torch.Tensor]  # (N, n, d) -> (N,) or (N, k)


@dataclass(frozen=True)
class Estimate:
    """A weighted average with its standard error.

    Attributes
    ----------
    value : float or torch.Tensor
        The estimate (a float for a scalar observable, ``(k,)`` otherwise), in the observable's unit.
    error : float or torch.Tensor
        Its standard error, same shape and unit.
    ess : float
        Normalised effective sample size of the weights, in [1/N, 1].
    n_samples : int
        Samples used.
    method : str
        ``"genealogy"`` or ``"bootstrap"``.
    """

    value: float | torch.Tensor
    error: float | torch.Tensor
    ess: float
    n_samples: int
    method: str

    def __str__(self) -> str:
        if isinstance(self.value, float):
            return f"{self.value:.6g} +- {self.error:.2g} (ESS {self.ess:.3f}, N = {self.n_samples})"
        pairs = ", ".join(f"{v:.4g} +- {e:.2g}" for v, e in zip(self.value.tolist(), self.error.tolist()))
        return f"[{pairs}] (ESS {self.ess:.3f}, N = {self.n_samples})"


def estimate(observable: Observable, positions: torch.Tensor, *, log_weights: torch.Tensor | None = None,
             ancestors: torch.Tensor | None = None, n_bootstrap: int = 500,
             generator: torch.Generator | None = None) -> Estimate:
    """Self-normalised weighted average of ``observable`` with a standard error.

    Parameters
    ----------
    observable : callable
        ``positions (N, n, d) -> (N,)`` or ``(N, k)`` values (finite).
    positions : torch.Tensor
        ``(N, n, d)`` samples (the energy's length unit), e.g. ``Samples.positions`` or
        ``SMCResult.positions``.
    log_weights : torch.Tensor, optional
        ``(N,)`` unnormalised log weights (``-inf`` allowed); default equal weights.
    ancestors : torch.Tensor, optional
        ``(N,)`` integer index of each sample's initial ancestor (SMC output): genealogy error.
    n_bootstrap : int
        Bootstrap replicates when ``ancestors`` is not given (>= 2).
    """
    if not isinstance(positions, torch.Tensor) or positions.ndim != 3 or len(positions) < 2:
        raise ValueError(f"positions must be a (N, n, d) tensor with N >= 2, got "
                         f"{tuple(positions.shape) if isinstance(positions, torch.Tensor) else type(positions).__name__}")
    N = len(positions)
    lw = torch.zeros(N, dtype=torch.float64) if log_weights is None else torch.as_tensor(log_weights).double().cpu()
    if lw.shape != (N,):
        raise ValueError(f"log_weights must have shape ({N},), got {tuple(lw.shape)}")
    if bool(torch.isnan(lw).any()) or bool((lw == math.inf).any()) or not bool(torch.isfinite(lw).any()):
        raise ValueError("log_weights must be finite or -inf, with at least one finite value")
    f = torch.as_tensor(observable(positions)).double().cpu()
    scalar = f.ndim == 1
    f = f.reshape(N, -1)
    if f.shape[0] != N or not bool(torch.isfinite(f).all()):
        raise ValueError(f"observable must return finite values of shape ({N},) or ({N}, k), got {tuple(f.shape)}")
    W = torch.softmax(lw, 0)
    mean = W @ f  # (k,)
    ess = effective_sample_size(lw)
    if ancestors is not None:
        a = torch.as_tensor(ancestors).long().cpu()
        if a.shape != (N,) or bool((a < 0).any()):
            raise ValueError(f"ancestors must be ({N},) non-negative integers, got shape {tuple(a.shape)}")
        contrib = torch.zeros(int(a.max()) + 1, f.shape[1], dtype=torch.float64)
        contrib.index_add_(0, a, W[:, None] * (f - mean))
        err, method = contrib.pow(2).sum(0).sqrt(), "genealogy"
    else:
        if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 2:
            raise ValueError(f"n_bootstrap must be an int >= 2, got {n_bootstrap!r}")
        reps = []
        for _ in range(n_bootstrap):
            idx = torch.randint(N, (N,), generator=generator)
            reps.append(torch.softmax(lw[idx], 0) @ f[idx])
        err, method = torch.stack(reps).std(0), "bootstrap"
    if scalar:
        return Estimate(float(mean[0]), float(err[0]), ess, N, method)
    return Estimate(mean, err, ess, N, method)


def energy_observable(energy: Energy, chunk_size: int = 4096) -> Observable:
    """``x -> E(x)`` (the energy's unit), evaluated in chunks without gradients (counted by the energy)."""

    def f(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([energy.energy(c) for c in torch.split(x, chunk_size)])

    return f


def basin_indicator(assign: Callable[[torch.Tensor], torch.Tensor], n_basins: int) -> Observable:
    """One-hot ``(N, n_basins)`` of ``assign(x)`` (integer basin labels): its estimate is the basin populations."""

    def f(x: torch.Tensor) -> torch.Tensor:
        labels = torch.as_tensor(assign(x)).long()
        if labels.shape != (len(x),) or bool((labels < 0).any() | (labels >= n_basins).any()):
            raise ValueError(f"assign must return ({len(x)},) labels in [0, {n_basins}), got shape {tuple(labels.shape)}")
        return torch.nn.functional.one_hot(labels, n_basins).double()

    return f


def distance_histogram_observable(edges: torch.Tensor) -> Observable:
    """Per-configuration histogram ``(N, len(edges) - 1)`` of its interparticle distances, as densities.

    The estimate is the weighted distance histogram (density per length unit), with error bars per bin.
    """
    edges = torch.as_tensor(edges, dtype=torch.float64)
    if edges.ndim != 1 or len(edges) < 2 or not bool((edges[1:] > edges[:-1]).all()):
        raise ValueError("edges must be a 1-D increasing tensor of at least 2 bin edges")

    def f(x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        i, j = torch.triu_indices(n, n, 1)
        d = (x[:, i] - x[:, j]).double().norm(dim=-1)  # (N, n_pairs)
        b = torch.bucketize(d, edges, right=True) - 1  # bin index, -1 / len-1 outside
        inside = (b >= 0) & (b < len(edges) - 1)
        h = torch.zeros(len(x), len(edges) - 1, dtype=torch.float64)
        h.scatter_add_(1, b.clamp(0, len(edges) - 2), inside.double())
        return h / (d.shape[1] * (edges[1:] - edges[:-1]))

    return f
