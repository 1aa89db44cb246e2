"""The metric blocks of an evaluation: energy statistics, reference metrics, mode coverage, energy budget.

Each function returns typed results (:class:`~idem_md.evaluation.report.Metric`,
:class:`~idem_md.evaluation.report.EnergyBudget`) for :func:`~idem_md.evaluation.evaluate` to
collect. Units: lengths in the energy's reduced length unit, energies in its reduced energy unit.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from .. import metrics as M
from ..energies.base import Energy
from ..io import Samples
from .report import EnergyBudget, Metric

__all__ = ["energy_statistics", "batch_plan", "reference_metrics", "mode_metrics", "evaluations_spent"]


def energy_statistics(e: np.ndarray, prefix: str) -> dict[str, Metric]:
    """``<prefix>_mean`` and ``<prefix>_std`` of the ``(N,)`` energies ``e``, with their standard errors."""
    n = len(e)
    sd = float(e.std(ddof=1)) if n > 1 else 0.0
    who = "samples" if prefix == "energy" else "reference samples"
    return {
        f"{prefix}_mean": Metric(float(e.mean()), sd / math.sqrt(n),
                                 f"mean energy of all {who} (reduced energy); "
                                 "std = standard error s/sqrt(N), assuming independent samples", 1, n),
        f"{prefix}_std": Metric(sd, sd / math.sqrt(2 * (n - 1)) if n > 1 else 0.0,
                                f"standard deviation (ddof=1) of the energies of all {who}; "
                                "std = normal-theory standard error s/sqrt(2(N-1))", 1, n),
    }


def batch_plan(n_x: int, n_y: int, n_batches: int, batch_size: int, notes: list[str]) -> tuple[int, int]:
    """Shrink ``batch_size`` (then ``n_batches``) so that both sets hold ``n_batches`` disjoint batches."""
    smallest = min(n_x, n_y)
    if smallest >= n_batches * batch_size:
        return n_batches, batch_size
    if smallest >= 2 * n_batches:
        bs = smallest // n_batches
        notes.append(f"batch_size shrunk from {batch_size} to {bs}: the smaller set holds {smallest} samples, "
                     f"fewer than n_batches * batch_size = {n_batches * batch_size}; W2 values grow as batches "
                     "shrink, so compare only numbers computed with the same batch size")
        return n_batches, bs
    notes.append(f"only {smallest} samples in the smaller set: reference metrics computed once on all of them "
                 f"(1 batch of {smallest}, std 0) instead of {n_batches} batches of {batch_size}")
    return 1, smallest


def reference_metrics(x: np.ndarray, y: np.ndarray, e_x: np.ndarray, e_y: np.ndarray, energy: Energy,
                      n_batches: int, batch_size: int, seed: int, geometric_max_samples: int | None,
                      tvd_bins: int, notes: list[str]) -> dict[str, Metric]:
    """W2 / TVD metrics of samples ``x`` (``(N, n, d)``, energies ``e_x``) against a reference ``y``, batched."""
    nb, bs = batch_plan(len(x), len(y), n_batches, batch_size, notes)
    per = f"; mean ± std over {nb} disjoint random batch(es) of {bs} samples per set"
    particles = energy.is_particle_system

    def run(fn: Callable[[Any, Any], float], a: Any, b: Any, definition: str) -> Metric:
        # same seed and set sizes => the same permutations, so energy batches pair with coordinate batches
        mean, std = M.batched(fn, a, b, n_batches=nb, batch_size=bs, seed=seed)
        return Metric(mean, std, definition + per, nb, bs)

    out: dict[str, Metric] = {}
    centred = "centred on each configuration's centre of mass (iDEM x-W2 convention)" if particles else "not centred"
    out["coordinate_w2"] = run(M.coordinate_w2, x, y,
                               f"exact W2 between flattened configurations, {centred} (reduced length)")
    if particles:
        gsub = geometric_max_samples if geometric_max_samples is None else min(int(geometric_max_samples), bs)
        if gsub is not None and gsub < bs:
            notes.append(f"geometric_w2: each batch subsampled to {gsub} configurations per set "
                         "(alignment cost grows as N*M)")
        out["geometric_w2"] = run(
            lambda a, b: M.geometric_w2(a, b, max_samples=gsub, seed=seed), x, y,
            "W2 with a rotation- and permutation-minimised cost (Kabsch + Hungarian alignment, an upper bound), "
            f"each batch subsampled to {gsub if gsub is not None else bs} configurations per set (reduced length)")
    out["energy_w2"] = run(M.energy_w2, e_x, e_y,
                           "exact 1D W2 between energy distributions, with the root (reduced energy)")
    out["energy_w2_idem"] = run(M.energy_w2_idem_convention, e_x, e_y,
                                "squared 1D energy W2 (no root), the number the iDEM code reports as E-W2 "
                                "(reduced energy squared)")
    if particles:
        out["distance_w2"] = run(M.distance_w2, x, y,
                                 "exact 1D W2 between pooled interatomic distances (reduced length)")
        out["distance_tvd"] = run(
            lambda a, b: M.distance_tvd(a, b, bins=tvd_bins), x, y,
            f"total variation distance between histograms of pooled interatomic distances, {tvd_bins} equal bins "
            "over the common range of each batch pair (dimensionless, [0, 1])")
    return out


def mode_metrics(x: np.ndarray, energy: Energy) -> dict[str, Metric]:
    """``mode_coverage`` of ``(N, 1, d)`` samples for mixtures with ``energy.means``; empty otherwise."""
    means = getattr(energy, "means", None)
    if not isinstance(means, torch.Tensor) or energy.n_particles != 1:
        return {}
    mu = means.detach().cpu().double().numpy()  # (M, d)
    cov = M.mode_coverage(x.reshape(len(x), -1), mu)
    return {"mode_coverage": Metric(cov, 0.0, f"fraction of the {len(mu)} modes holding >= 1% of all {len(x)} "
                                    "samples (nearest-mean assignment); single value on all samples, std 0",
                                    1, len(x))}


def evaluations_spent(s: Samples, sampler: Any) -> EnergyBudget:
    """Energy evaluations that produced the samples, from their metadata or the sampler's counters."""
    meta = s.metadata.get("energy_evaluations")
    if isinstance(meta, dict):
        breakdown = {str(k): int(v) for k, v in meta.items()}
        return EnergyBudget(int(sum(breakdown.values())), breakdown, "samples.metadata['energy_evaluations']")
    if isinstance(meta, (int, float)) and not isinstance(meta, bool):
        breakdown = {}
        for key in ("n_steps", "n_minimization_evaluations", "n_energy_queries"):  # MDRun metadata
            if isinstance(s.metadata.get(key), (int, float)):
                breakdown[key] = int(s.metadata[key])
        return EnergyBudget(int(meta), breakdown, "samples.metadata['energy_evaluations']")
    if sampler is not None:
        breakdown = {str(k): int(v) for k, v in sampler.counters.items()}
        return EnergyBudget(int(sum(breakdown.values())), breakdown, "sampler.counters at the start of evaluate()")
    return EnergyBudget(None, {}, "unknown: samples carry no 'energy_evaluations' metadata")
