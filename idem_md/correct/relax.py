"""Relaxation of proposals (not exact): capped steepest descent, then unadjusted Langevin."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..dem.sde import remove_mean
from ..energies.base import Energy
from .mala import mala
from .targets import BoltzmannTarget

__all__ = ["RelaxResult", "relax"]


@dataclass
class RelaxResult:
    """Configurations after :func:`relax` (*not* exact samples of p).

    Attributes
    ----------
    positions : torch.Tensor
        ``(B, n, d)``.
    energies : torch.Tensor
        ``(B,)`` in the energy unit.
    n_minimised : int
        Configurations whose forces exceeded ``max_force`` and were minimised first.
    n_energy_evaluations : int
        Energy-and-force evaluations spent.
    acceptance_rate : float
        Metropolis acceptance the Langevin steps *would* have had (a bias diagnostic: near 1 means small bias).
    """

    positions: torch.Tensor
    energies: torch.Tensor
    n_minimised: int
    n_energy_evaluations: int
    acceptance_rate: float

    def summary(self) -> dict:
        return {"method": "relax", "n_minimised": self.n_minimised, "n_energy_evaluations": self.n_energy_evaluations,
                "would_be_acceptance": self.acceptance_rate}


def relax(energy: Energy, x: torch.Tensor, *, langevin_steps: int = 100, max_force: float = 100.0,
          minimize_steps: int = 200, max_displacement: float | None = None, would_be_acceptance: float = 0.95,
          generator: torch.Generator | None = None) -> RelaxResult:
    r"""Remove near-overlaps: capped steepest descent, then unadjusted Langevin (biased, cheap).

    Configurations whose largest per-coordinate force exceeds ``max_force`` (in kT per
    length unit) first take up to ``minimize_steps`` steepest-descent steps, each
    displacement capped at ``max_displacement`` (default 2% of the configuration's
    coordinate spread), until the forces fall below it. Then every configuration takes
    ``langevin_steps`` steps of ``x += eps F/kT + sqrt(2 eps) xi`` with no Metropolis test,
    the step size per chain adapted (first half) towards a would-be Metropolis acceptance of
    ``would_be_acceptance``: the higher, the smaller the step and its bias (0.6, MALA's own target,
    heated DW-4 to an energy W2 of 4.6 against 1.3 for the raw samples; hence 0.95).
    """
    for name, v in (("langevin_steps", langevin_steps), ("minimize_steps", minimize_steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    if not max_force > 0:
        raise ValueError(f"max_force must be > 0 (kT per length unit), got {max_force!r}")
    target = BoltzmannTarget(energy)
    x = torch.as_tensor(x).detach().double().cpu()
    if target.mean_free:
        x = remove_mean(x)
    lp, g = target(x)
    cap = (0.02 * x.flatten(1).std(1)).clamp_min(1e-6) if max_displacement is None else torch.full((len(x),), float(max_displacement), dtype=x.dtype)
    too_big = g.flatten(1).abs().amax(1) > max_force
    n_min = int(too_big.sum())
    active = too_big.clone()
    for _ in range(minimize_steps):
        if not bool(active.any()):
            break
        ga = g[active]
        scale = torch.minimum(torch.ones_like(cap[active]), cap[active] / ga.flatten(1).abs().amax(1).clamp_min(1e-30))
        xa = x[active] + scale[:, None, None] * ga  # steepest descent on E: along F / kT
        lpa, gnew = target(xa)
        better = lpa >= lp[active]
        idx = active.nonzero().flatten()
        x[idx[better]], lp[idx[better]], g[idx[better]] = xa[better], lpa[better], gnew[better]
        cap[idx[~better]] *= 0.5  # overshoot: shrink that configuration's step
        active = g.flatten(1).abs().amax(1) > max_force
    res = mala(target, x, n_steps=langevin_steps, warmup=langevin_steps // 2, metropolis=False,
               mean_free=target.mean_free, generator=generator, state=(lp, g), target_accept=would_be_acceptance)
    return RelaxResult(res.positions, -res.log_density * energy.kT, n_min, target.n_evaluations, res.acceptance_rate)
