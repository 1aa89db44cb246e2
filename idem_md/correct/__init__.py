r"""Correction: from proposal samples to the exact Boltzmann distribution.

A trained sampler proposes configurations from some density ``q``; the target is
:math:`p(x) \propto \exp(-E(x)/kT)`. This module turns proposals into samples of
``p`` (asymptotically exact) and estimates :math:`\log Z = \log \int e^{-E/kT} dx`:

* :func:`mala` — Metropolis-adjusted Langevin chains, batched, one step size per
  chain adapted towards a target acceptance during warm-up only (then fixed, so
  the chains are exactly ``p``-invariant);
* :func:`smc` — annealed sequential Monte Carlo from ``q`` to ``p`` along
  :math:`\pi_\beta \propto q^{1-\beta} p^\beta`, exponents chosen adaptively by the
  conditional ESS, multinomial resampling when the ESS falls, MALA rejuvenation at
  every stage (step sizes adapted between stages, never within one), log Z from
  the incremental weights. With a good ``q`` it reduces to importance
  resampling plus MALA at the target;
* :func:`relax` — *not exact*: capped steepest descent for configurations with
  huge forces (near-overlaps), then unadjusted Langevin steps. Cheap; removes
  overlaps; its samples are biased by the step size.

Only :meth:`~idem_md.energies.base.Energy.energy_and_forces` of the target is
called, so ASE and OpenMM targets work; every call is counted in the results.
The proposal enters through :class:`Proposal`: ``log_prob_and_grad(x)`` (and,
for :func:`smc` without given samples, ``sample_with_log_prob(n)``).

Units: positions in the energy's length unit, shape ``(B, n, d)``; log densities
in nats; step sizes in length unit squared per unit of ``log p`` gradient
(``x' = x + eps grad log p + sqrt(2 eps) xi``). Particle systems
(``energy.is_particle_system``) are sampled on the centre-of-mass-free subspace,
where ``q`` must be normalised too.

Examples
--------
>>> import torch
>>> from idem_md import get_energy
>>> gmm = get_energy("gmm40")
>>> q = GaussianProposal(torch.zeros(1, 2), 40.0)
>>> res = smc(gmm, q, 256, mcmc_steps=2, generator=torch.Generator().manual_seed(0))
>>> res.positions.shape, res.beta_schedule[-1]
(torch.Size([256, 1, 2]), 1.0)
"""

from .mala import MALAResult, mala
from .pipeline import CORRECTIONS, CorrectionOptions, corrected_samples
from .relax import RelaxResult, relax
from .smc import SMCResult, smc
from .targets import BoltzmannTarget, GaussianProposal, Proposal, multinomial_resample

__all__ = [
    "Proposal",
    "GaussianProposal",
    "BoltzmannTarget",
    "MALAResult",
    "mala",
    "SMCResult",
    "smc",
    "RelaxResult",
    "relax",
    "multinomial_resample",
    "CorrectionOptions",
    "corrected_samples",
    "CORRECTIONS",
]
