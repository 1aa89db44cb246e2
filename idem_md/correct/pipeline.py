"""One call from a trained sampler to corrected samples: what ``idem-md sample --correct`` runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

from .mala import mala
from .relax import relax
from .smc import smc
from .targets import BoltzmannTarget

if TYPE_CHECKING:
    from ..io import Samples
    from ..sampler import IDEMSampler

__all__ = ["CORRECTIONS", "CorrectionOptions", "corrected_samples"]

#: Names accepted by ``idem-md sample --correct``.
CORRECTIONS = ("none", "relax", "mala", "relax+mala", "smc")


@dataclass(frozen=True)
class CorrectionOptions:
    """How :func:`corrected_samples` corrects the sampler's output.

    Parameters
    ----------
    method : {"none", "relax", "mala", "relax+mala", "smc"}
        ``none``: raw reverse-SDE samples. ``relax``: minimise near-overlaps, then unadjusted
        Langevin (cheap, *not exact*). ``mala``: MALA chains started from the raw samples
        (exact in the limit of many steps). ``relax+mala``: ``relax`` first, then MALA from the
        relaxed configurations (for targets such as LJ-13 whose raw samples contain near-overlaps,
        where a MALA chain started in an overlap rejects every move). ``smc``: annealed SMC from the sampler's density
        model (:attr:`IDEMSampler.density`) to the target, with log Z (asymptotically exact in
        the number of particles).
    mala_steps : int
        MALA steps per chain (``mala``: in total, the first half adapts the step size; ``smc``:
        at the target after resampling, and per tempering stage with ``anneal``). Default 100:
        on DW-4 after SMC, 20 steps left the energy W2 against long MD at 0.103, 100 reached the
        exact-sampler floor (0.081 vs 0.083), for 2e5 energy evaluations (docs/results.md).
    relax_steps : int
        Langevin steps of ``relax``.
    anneal : bool
        SMC only. False (default): one importance stage straight to the target, resampling, then
        ``mala_steps`` MALA steps at the target (needs ``log q`` only at the proposals, which come
        with it). True: adaptive tempering ``q^(1-beta) p^beta`` with MALA moves at every stage,
        which evaluates ``log q`` and its gradient at every move: with the CNF density model on a
        CPU that is ~100 s per 1000 DW-4 moves, so reserve it for a GPU or a cheap proposal.
    cess_target : float
        Conditional ESS per SMC stage, in (0, 1); higher means more, smaller stages.
    weighted : bool
        SMC only: return the weighted particles instead of resampling them at the end.
    oversample : int
        SMC only: draw ``oversample * n`` proposals and resample ``n`` of them at the target, so
        that fewer outputs share an ancestor (ignored with ``weighted``).
    seed : int
        Seed of the correction's random numbers.
    """

    method: str = "none"
    mala_steps: int = 100
    relax_steps: int = 100
    anneal: bool = False
    cess_target: float = 0.9
    weighted: bool = False
    oversample: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in CORRECTIONS:
            raise ValueError(f"method must be one of {CORRECTIONS}, got {self.method!r}")
        for name in ("mala_steps", "relax_steps", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative int, got {v!r}")
        if isinstance(self.oversample, bool) or not isinstance(self.oversample, int) or self.oversample < 1:
            raise ValueError(f"oversample must be a positive int, got {self.oversample!r}")
        if not 0 < self.cess_target < 1:
            raise ValueError(f"cess_target must be in (0, 1), got {self.cess_target!r}")


def corrected_samples(sampler: "IDEMSampler", n: int, options: CorrectionOptions | None = None, *,
                      steps: int | None = None, progress: bool = True) -> "Samples":
    """``n`` samples of ``sampler``, corrected as ``options`` says.

    Every energy evaluation of the correction is added to ``sampler.counters["correction"]``;
    the Samples' metadata holds the counters and, under ``"correction"``, the method's summary
    (log Z and its error, ESS per stage, acceptance, evaluations) and the final log weights.
    ``smc`` needs ``sampler.density`` (fit it with :meth:`IDEMSampler.fit_density`).

    Parameters
    ----------
    sampler : IDEMSampler
        A trained sampler.
    n : int
        Proposals to draw (SMC particles; diverged or failed proposals are dropped and counted).
    steps : int, optional
        Reverse-SDE steps of the raw samples (default: the run's ``sample_sde_steps``, see
        :meth:`IDEMConfig.sampling_integrator`).
    """
    from ..io import Samples

    opts = options or CorrectionOptions()
    energy = sampler.energy
    g = torch.Generator().manual_seed(opts.seed)
    if opts.method == "none":
        return sampler.sample(n, steps=steps, progress=progress)
    if opts.method == "smc":
        if sampler.density is None:
            raise ValueError("method='smc' needs a density model: call sampler.fit_density() first")
        k = 1 if opts.weighted else opts.oversample
        x, log_q = sampler.density.sample_with_log_prob(k * n, generator=g, progress=progress)
        res = smc(energy, sampler.density, samples=(x, log_q), mcmc_steps=opts.mala_steps, anneal=opts.anneal,
                  cess_target=opts.cess_target, resample_final=not opts.weighted, n_final=None if k == 1 else n,
                  generator=g, progress=progress)
        positions, energies, spent = res.positions, res.energies, res.n_energy_evaluations
        summary = {**res.summary(), "log_weights": res.log_weights.tolist(), "ancestors": res.ancestors.tolist()}
    else:
        raw = sampler.sample(n, steps=steps, compute_energies=False, progress=progress)
        x = raw.positions.double()
        spent, summary = 0, {}
        if opts.method in ("relax", "relax+mala"):
            out = relax(energy, x, langevin_steps=opts.relax_steps, generator=g)
            positions, energies, spent, summary = out.positions, out.energies, out.n_energy_evaluations, out.summary()
            x = positions
        if opts.method in ("mala", "relax+mala"):
            target = BoltzmannTarget(energy)
            out = mala(target, x, n_steps=opts.mala_steps, warmup=opts.mala_steps // 2,
                       mean_free=target.mean_free, generator=g)
            positions, energies = out.positions, -out.log_density * energy.kT
            spent += target.n_evaluations
            summary = {**({"relax": summary} if summary else {}), "method": opts.method, "n_steps": opts.mala_steps,
                       "acceptance_rate": out.acceptance_rate, "n_energy_evaluations": spent}
        summary["n_diverged"] = raw.metadata.get("n_diverged", 0)
    sampler.counters["correction"] = sampler.counters.get("correction", 0) + spent
    dtype = torch.get_default_dtype()
    finite = torch.isfinite(energies) & torch.isfinite(positions.to(dtype)).flatten(1).all(1)
    meta = {"system": energy.name, "kT": energy.kT, "source": f"idem+{opts.method}", "length_unit": energy.length_unit,
            "outer_iterations": sampler.outer_iteration, "energy_evaluations": dict(sampler.counters),
            "correction": {**summary, "options": asdict(opts), "n_dropped_nonfinite": int((~finite).sum())}}
    # Samples hold finite values only: a state with a non-finite energy has zero weight and zero
    # acceptance, so it can only remain where it started; both kinds are counted above.
    return Samples(positions[finite].to(dtype), energies[finite].to(dtype), meta)
