"""Model likelihood blocks of an evaluation: NLL of reference samples and importance-sampling ESS.

Two models can stand behind ``log q``:

* :func:`density_likelihood_block`: the sampler's CNF density model
  (:class:`~idem_md.dem.density.DensityModel`, fitted by flow matching on the sampler's own
  samples and integrated with dopri5): the iDEM paper's route to its NLL and ESS columns;
* :func:`score_likelihood_block`: the probability-flow ODE of the trained score itself
  (Euler steps). A diagnostic only: at large t the learned score is not a consistent vector
  field and this density is unusable (ESS ~ 0.001 on every benchmark, docs/results.md).

Both return a :class:`~idem_md.evaluation.LikelihoodResult` and a
:class:`~idem_md.evaluation.ReweightedResult`, and report failures (non-finite ``log q`` from a
solve) as counts and fractions beside the values computed from the finite ones. Units: nats;
densities over the energy's length unit, on the centre-of-mass-free subspace for particle systems.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import numpy as np
import torch

from .analysis.weights import importance_sampling_summary
from .dem.sde import EXACT_DIVERGENCE_MAX_DIM, degrees_of_freedom
from .energies.base import Energy
from .evaluation.report import LikelihoodResult, ReweightedResult
from .io import Samples
from .samples.energies import compute_energies

__all__ = ["density_likelihood_block", "score_likelihood_block"]

_LOG_PROB_CHUNK = 256  # configurations per ODE solve (an exact divergence keeps B x dim graphs)


def _divergence_label(divergence: str, dim: int) -> str:
    exact = divergence == "exact" or (divergence == "auto" and dim <= EXACT_DIVERGENCE_MAX_DIM)
    if exact:
        return "exact divergence (one backward pass per coordinate)"
    return "Hutchinson divergence estimate (one fixed Rademacher probe per sample, unbiased but noisy)"


def _ode_t_min() -> float | None:
    from .dem.sde import probability_flow_log_prob

    default = inspect.signature(probability_flow_log_prob).parameters["t_min"].default
    return None if default is inspect.Parameter.empty else float(default)


def _space(energy: Energy, mean_free: bool) -> str:
    if mean_free:
        return (f"density on the {degrees_of_freedom(energy.n_particles, energy.spatial_dim, True)}-dimensional centre-of-mass-free "
                "subspace (orthonormal coordinates)")
    return f"density on R^{energy.dim}"


def _finite_only(values: np.ndarray, what: str, notes: list[str]) -> np.ndarray:
    ok = np.isfinite(values)
    if not ok.all():
        notes.append(f"{what}: {int((~ok).sum())} of {len(values)} log densities were not finite (failed ODE "
                     "solves); they are counted in the block and left out of its mean")
    return ok


def _chunked(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> np.ndarray:
    return torch.cat([fn(c).detach().cpu().double() for c in torch.split(x, _LOG_PROB_CHUNK)]).numpy()


def _block(log_prob: Callable[[torch.Tensor], torch.Tensor],
           sample_with_log_prob: Callable[[int], tuple[Samples, torch.Tensor]], energy: Energy,
           r: Samples | None, n_points: int, seed: int, notes: list[str], model: str, method: str,
           dof: int) -> tuple[LikelihoodResult, ReweightedResult | None]:
    """NLL of (a subset of) ``r`` under ``log_prob``, and the ESS of ``sample_with_log_prob`` draws."""
    out: dict[str, Any] = {"model": model, "method": method,
                           "convention": f"nats; log q is a density over {dof} coordinates in the energy's length "
                                         "units; NLL = -mean log q(x_ref) (no per-dimension normalisation)"}
    if r is not None:
        out.update(_nll(log_prob, r, n_points, seed, notes, model))
    else:
        out["n_nll_failed"] = 0
        notes.append("no reference: NLL not computed (ESS and reweighting use model samples only)")

    # The ESS needs samples *from* q with the log q of the same draws.
    model_samples, lq_t = sample_with_log_prob(n_points)
    e = model_samples.energies.detach().cpu().double().numpy()  # (N,)
    lq = lq_t.detach().cpu().double().numpy()  # (N,)
    ok = _finite_only(lq, f"ESS ({model})", notes) & np.isfinite(e)
    out.update(n_ess_failed=int((~ok).sum()), ess_failure_fraction=float((~ok).mean()))
    if not ok.any():
        notes.append(f"ESS ({model}) not computed: no model sample had a finite log q and energy")
        return LikelihoodResult(**out, ess=None, n_ess=0, log_Z_estimate=None), None
    summary = importance_sampling_summary(-e[ok] / energy.kT, lq[ok], values=e[ok])
    lik = LikelihoodResult(**out, ess=summary.ess, n_ess=int(ok.sum()), log_Z_estimate=summary.log_Z)
    reweighted = ReweightedResult(
        energy_mean=float(summary.reweighted_mean), raw_energy_mean=float(e[ok].mean()), ess=summary.ess,
        n=int(ok.sum()),
        definition=f"self-normalised importance-sampling estimate sum_i w_i E(x_i) over samples x_i ~ q ({model}), "
                   "w_i proportional to exp(-E(x_i)/kT) / q(x_i); raw_energy_mean is their unweighted mean")
    return lik, reweighted


def _nll(log_prob: Callable[[torch.Tensor], torch.Tensor], r: Samples, n_points: int, seed: int,
         notes: list[str], model: str) -> dict[str, Any]:
    """The NLL fields of the block: ``-log q`` of (up to ``n_points`` of) the reference samples ``r``."""
    rng = np.random.default_rng(seed)
    idx = np.arange(len(r)) if len(r) <= n_points else np.sort(rng.choice(len(r), n_points, replace=False))
    if len(idx) < len(r):
        notes.append(f"NLL on a random subset of {len(idx)} of the {len(r)} reference samples")
    lq = _chunked(log_prob, r.positions[torch.as_tensor(idx)])  # (M,)
    ok = _finite_only(lq, f"NLL ({model})", notes)
    out: dict[str, Any] = {"n_nll_failed": int((~ok).sum()), "nll_failure_fraction": float((~ok).mean())}
    if ok.any():
        v = lq[ok]
        # The mean is what the paper reports; the median shows the bulk when a few reference points
        # fall where the model has (almost) no mass, e.g. in a missed mode.
        out.update(nll=float(-v.mean()), n_nll=int(ok.sum()), nll_median=float(-np.median(v)),
                   nll_std_error=float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0)
    return out


def density_likelihood_block(density: Any, energy: Energy, r: Samples | None, n_points: int, seed: int,
                             notes: list[str]) -> tuple[LikelihoodResult, ReweightedResult | None]:
    """The likelihood block from a fitted :class:`~idem_md.dem.density.DensityModel`."""
    cfg = density.config

    def draw(n: int) -> tuple[_SamplesWithEnergies, torch.Tensor]:
        x, lq = density.sample_with_log_prob(n, generator=torch.Generator().manual_seed(seed))
        ok = torch.isfinite(lq) & torch.isfinite(x).flatten(1).all(1)
        e = torch.full((n,), float("nan"), dtype=torch.float64)  # (n,), NaN where the draw failed
        if ok.any():
            e[ok.cpu()] = compute_energies(x[ok].double(), energy).cpu().double()
        return _SamplesWithEnergies(x, e), lq

    method = (f"CNF density model fitted by flow matching ({density.network_kind} field), torchdiffeq "
              f"{cfg.method} atol {cfg.atol:g} rtol {cfg.rtol:g}, "
              f"{_divergence_label(cfg.divergence, energy.dim)}; {_space(energy, density.mean_free)}")
    return _block(lambda x: density.log_prob(x.double()), draw, energy, r, n_points, seed, notes,
                  "density_model", method, density.dof)


class _SamplesWithEnergies:
    """The two attributes :func:`_block` reads of model samples (positions may hold failed rows)."""

    def __init__(self, positions: torch.Tensor, energies: torch.Tensor):
        self.positions, self.energies = positions, energies


def score_likelihood_block(sampler: Any, energy: Energy, r: Samples | None, n_points: int, steps: int,
                           divergence: str, seed: int, notes: list[str]
                           ) -> tuple[LikelihoodResult, ReweightedResult | None]:
    """The likelihood block from the probability-flow ODE of the trained score (a diagnostic)."""
    t_min = _ode_t_min()
    start = f"t = {t_min:g}" if t_min is not None else "t = 0"
    mean_free = getattr(sampler, "mean_free", energy.is_particle_system)
    method = (f"probability-flow ODE of the trained score (IDEMSampler.log_prob; a diagnostic, not a usable "
              f"density), Euler, {steps} steps from {start} to t = 1 plus the prior's log density, "
              f"{_divergence_label(divergence, energy.dim)}; {_space(energy, mean_free)}, "
              "in the energy's reduced length units (coordinate_scale Jacobian included)")
    dof = degrees_of_freedom(energy.n_particles, energy.spatial_dim, mean_free)
    return _block(lambda x: sampler.log_prob(x.float(), steps=steps, divergence=divergence),
                  lambda n: sampler.sample_with_log_prob(n, steps=steps, divergence=divergence),
                  energy, r, n_points, seed, notes, "score_probability_flow", method, dof)
