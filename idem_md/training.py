"""The steps of iDEM's training loop: one inner (regression) step, one outer (buffer refill) step, and
the typed record of each outer iteration (:class:`OuterIterationRecord`, :attr:`IDEMSampler.history`).

:class:`~idem_md.IDEMSampler` runs the loop (``fit``); the functions here take the sampler and
change its network, optimiser, buffer and counters exactly as its methods did.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import torch

from ._records import Record
from .dem.estimator import clip_score, estimate_dem_score
from .dem.sde import remove_mean

if TYPE_CHECKING:
    from .sampler import IDEMSampler

__all__ = ["OuterIterationRecord", "RefillSchedule", "train_step", "refill_buffer", "finish_outer_iteration"]


@dataclass
class OuterIterationRecord(Record):
    """What one outer iteration of :meth:`IDEMSampler.fit` did (one line of a run's ``metrics.jsonl``).

    Attributes
    ----------
    outer_iteration : int
        Outer iterations done, this one included (1 for the first).
    loss : float
        Mean DEM regression loss of the iteration's inner steps.
    estimator_ess : float
        Mean effective sample size of the Monte-Carlo score estimator, per row, in [0, 1].
    buffer_new_mean_energy, buffer_new_median_energy : float
        Mean and median energy (the energy's unit) of the samples added to the buffer (NaN in pDEM
        mode, or when every candidate was rejected). The mean is dominated by rare near-overlaps
        (LJ's r^-12 wall); the median shows the bulk.
    energy_evaluations : int
        All energy evaluations so far (:attr:`IDEMSampler.energy_evaluations`).
    estimator_evaluations : int
        Those of the DEM estimator (``counters["estimator"]``).
    wall_time_s : float
        Seconds of this iteration: its inner steps and the refill.
    nonfinite_perturbations : int
        Estimator perturbations with non-finite energy or forces so far.
    rejected_buffer_candidates : int
        Refill candidates with non-finite coordinates or energy so far.
    new_samples : int or None
        Reverse-SDE candidates this iteration's refill drew (all ranks; ``samples_per_outer``
        unless :class:`RefillSchedule` shrank it; 0 in pDEM mode; None in records written before
        the adaptive refill existed).
    """

    outer_iteration: int
    loss: float
    estimator_ess: float
    buffer_new_mean_energy: float
    buffer_new_median_energy: float
    energy_evaluations: int
    estimator_evaluations: int
    wall_time_s: float
    nonfinite_perturbations: int
    rejected_buffer_candidates: int
    new_samples: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OuterIterationRecord":
        """A record from its :meth:`to_dict` form (checkpoints, ``metrics.jsonl``).

        Keys of other versions are ignored; ``buffer_new_median_energy``, missing from records
        written before it existed, becomes NaN.
        """
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise TypeError(f"a history record must be a dict, got {type(data).__name__}")
        values = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        values.setdefault("buffer_new_median_energy", float("nan"))
        values.setdefault("new_samples", None)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in values]
        if missing:
            raise ValueError(f"a history record lacks {', '.join(missing)}")
        return cls(**values)


@dataclass
class RefillSchedule:
    """How many reverse-SDE samples the next refill draws (``IDEMConfig.refill_min_fraction``).

    With ``refill_min_fraction`` 1 (the default, iDEM) every refill draws ``samples_per_outer``.
    Below 1: when a two-sample Kolmogorov-Smirnov test cannot tell the energies of a refill from
    those of the refill before it (p-value above ``refill_pvalue``: the sampler's output has stopped
    changing), the next refill draws half as many, down to ``ceil(refill_min_fraction *
    samples_per_outer)``; a refill that differs restores the full size. The test is on energies
    only, and loses power as the refills shrink (documented limit). It saves reverse-SDE time: each
    new sample costs one energy evaluation, the estimator ``batch_size * num_mc_samples`` per step.

    Attributes
    ----------
    size : int
        Candidates the next refill draws, all ranks together.
    previous : torch.Tensor or None
        ``(m,)`` float64 energies of the last refill's kept candidates (adaptive mode only).
    last_size : int
        Candidates the last refill drew (0 before the first).
    last_pvalue : float
        KS p-value of the last comparison (NaN when none was made).

    Examples
    --------
    >>> import torch
    >>> from idem_md.config import IDEMConfig
    >>> cfg = IDEMConfig(samples_per_outer=400, refill_min_fraction=0.25)
    >>> r = RefillSchedule(400)
    >>> same = lambda seed: torch.randn(400, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    >>> r.update(same(0), cfg); r.size  # nothing to compare with yet
    400
    >>> r.update(same(1), cfg); r.size  # indistinguishable from the refill before: halve
    200
    >>> r.update(same(2)[:200] + 3.0, cfg); r.size  # the output moved: back to the full size
    400
    """

    size: int
    previous: torch.Tensor | None = None
    last_size: int = 0
    last_pvalue: float = float("nan")

    def update(self, energies: torch.Tensor, cfg: Any) -> None:
        """Record a refill of ``self.size`` candidates whose kept energies are ``energies`` ``(m,)`` and
        set the size of the next one."""
        self.last_size, self.last_pvalue = self.size, float("nan")
        if cfg.refill_min_fraction >= 1.0:
            self.size, self.previous = cfg.samples_per_outer, None
            return
        energies = energies.detach().double().cpu()
        smallest = max(1, math.ceil(cfg.refill_min_fraction * cfg.samples_per_outer))
        if self.previous is not None and min(len(self.previous), len(energies)) >= 8:
            from scipy.stats import ks_2samp

            self.last_pvalue = float(ks_2samp(self.previous.numpy(), energies.numpy()).pvalue)
        stationary = self.last_pvalue > cfg.refill_pvalue  # False for NaN
        self.size = max(smallest, self.size // 2) if stationary else cfg.samples_per_outer
        self.previous = energies

    def state_dict(self) -> dict[str, Any]:
        """Plain data and tensors for a checkpoint."""
        return {"size": self.size, "previous": self.previous, "last_size": self.last_size,
                "last_pvalue": self.last_pvalue}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        self.size, self.previous = int(state["size"]), state.get("previous")
        self.last_size, self.last_pvalue = int(state.get("last_size", 0)), float(state.get("last_pvalue", math.nan))


def _tweedie_shift(sampler: "IDEMSampler", x_t: torch.Tensor, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The current network's denoising step ``h * s_theta(x_t, t)`` (B, n, d), clipped like the targets,
    as the estimator's importance-sampling shift (``config.estimator_shift``; no gradient)."""
    cfg = sampler.config
    s = clip_score(sampler.score(x_t, t), cfg.score_clip, per_particle=sampler.energy.is_particle_system)
    shift = h[:, None, None] * s  # (B, n, d), working length
    return remove_mean(shift) if sampler.mean_free else shift


def train_step(sampler: "IDEMSampler") -> tuple[float, float]:
    """One gradient step of the DEM regression (iDEM Eq. 9). Returns (loss, mean estimator ESS), all ranks."""
    cfg, dist = sampler.config, sampler.dist
    B = dist.shard(cfg.batch_size)  # this rank's share of the global batch
    x0 = sampler._prior(B) if cfg.pdem else sampler.buffer.sample(B, generator=sampler.generator)  # (B, n, d)
    t = torch.rand(B, generator=sampler.generator, device=sampler.device)  # (B,)
    h = sampler.schedule.h(t)  # (B,)
    noise = torch.randn(x0.shape, generator=sampler.generator, device=sampler.device)
    x_t = x0 + h.sqrt()[:, None, None] * noise  # (B, n, d)
    if sampler.mean_free:
        x_t = remove_mean(x_t)
    shift = _tweedie_shift(sampler, x_t, t, h) if cfg.estimator_shift else None  # (B, n, d) or None
    before = sampler.energy.n_evaluations
    est = estimate_dem_score(sampler.energy, x_t, t, sampler.schedule, cfg.num_mc_samples,
                             coordinate_scale=cfg.coordinate_scale, score_clip=cfg.score_clip,
                             chunk_size=cfg.estimator_chunk_size, generator=sampler.generator,
                             antithetic=cfg.estimator_antithetic, control_variate_scale=cfg.estimator_cv_scale,
                             target_ess=cfg.estimator_target_ess, min_mc_samples=cfg.estimator_min_mc_samples,
                             proposal_shift=shift)
    sampler.counters["estimator"] += int(dist.sum(sampler.energy.n_evaluations - before))
    sampler.nonfinite["estimator_perturbations"] += int(dist.sum(est.n_nonfinite))
    sampler.nonfinite["estimator_rows"] += int(dist.sum(est.n_all_nonfinite))

    sampler.network.train()
    pred = sampler._train_module(x_t, t)  # (B, n, d); DDP all-reduces the gradients
    err = (pred - est.score).pow(2).flatten(1).mean(1)  # (B,)
    weight = h + cfg.loss_weight_eps if cfg.loss_weighting == "h_plus_eps" else torch.ones_like(h)
    loss = (weight * err).mean()
    sampler.optimizer.zero_grad(set_to_none=True)
    global_loss = dist.sum(float(loss.detach())) / dist.world_size
    ess = dist.sum(float(est.ess.mean())) / dist.world_size
    if not math.isfinite(global_loss):  # every rank sees the same value, so all stop together
        return global_loss, ess
    loss.backward()
    grad_norm = float(torch.nn.utils.clip_grad_norm_(sampler.network.parameters(), cfg.grad_clip))
    if not math.isfinite(grad_norm):  # never let NaN/inf weights reach a checkpoint
        sampler.optimizer.zero_grad(set_to_none=True)
        raise FloatingPointError(
            f"gradient norm became {grad_norm} at outer iteration {sampler.outer_iteration}, inner step "
            f"{sampler.inner_step} (finite loss {global_loss:.4g}); the weights were not updated and the last good "
            "checkpoint is kept. Try a smaller lr or score_clip."
        )
    sampler.optimizer.step()
    return global_loss, ess


def refill_buffer(sampler: "IDEMSampler") -> tuple[float, float]:
    """Outer step: reverse-SDE samples of the frozen network go into the buffer.

    Candidates with non-finite coordinates or energies are rejected (and counted). Returns the mean
    and median energy of the kept candidates of all ranks (NaN when none was kept).
    """
    dist, scale = sampler.dist, sampler.config.coordinate_scale
    x = sampler._generate(dist.shard(sampler.refill.size))  # (m, n, d) working coordinates, this rank
    finite = torch.isfinite(x).flatten(1).all(1)  # (m,)
    x = x[finite]
    before = sampler.energy.n_evaluations
    e = sampler.energy.energy(x * scale) if len(x) else torch.zeros(0)
    sampler.counters["sampling"] += int(dist.sum(sampler.energy.n_evaluations - before))
    ok = torch.isfinite(e).to(x.device)
    sampler.nonfinite["rejected_buffer_candidates"] += int(dist.sum(int((~finite).sum()) + int((~ok).sum())))
    kept_e = e[ok.to(e.device)].detach().double()
    sampler._add_to_buffer(x[ok])
    everyone = dist.gather_rows(kept_e)  # every rank's kept energies (collective)
    sampler.refill.update(everyone, sampler.config)  # the same decision on every rank
    if not len(everyone):
        return float("nan"), float("nan")
    return float(everyone.mean()), float(everyone.median())


def finish_outer_iteration(sampler: "IDEMSampler", t0: float) -> OuterIterationRecord:
    """Outer step (refill the buffer) and the iteration's record, appended to ``sampler.history``.

    ``t0``: the iteration's start (``time.perf_counter``), so that its wall time covers the inner
    steps and the refill.
    """
    steps = max(sampler.inner_step, 1)
    new_mean, new_median = (float("nan"),) * 2 if sampler.config.pdem else sampler._refill_buffer()
    sampler.outer_iteration += 1
    record = OuterIterationRecord(
        outer_iteration=sampler.outer_iteration,
        loss=sampler._partial["loss"] / steps,
        estimator_ess=sampler._partial["ess"] / steps,
        buffer_new_mean_energy=new_mean,
        buffer_new_median_energy=new_median,
        energy_evaluations=sampler.energy_evaluations,
        estimator_evaluations=sampler.counters["estimator"],
        wall_time_s=time.perf_counter() - t0,
        nonfinite_perturbations=sampler.nonfinite["estimator_perturbations"],
        rejected_buffer_candidates=sampler.nonfinite["rejected_buffer_candidates"],
        new_samples=0 if sampler.config.pdem else sampler.refill.last_size,
    )
    sampler.history.append(record)
    sampler.inner_step = 0
    sampler._partial = {"loss": 0.0, "ess": 0.0}
    return record
