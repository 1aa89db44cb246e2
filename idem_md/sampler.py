"""IDEMSampler: the iDEM bi-level training loop (Algorithm 1 of arXiv:2402.06121).

Inner loop: regress the score network onto the Monte-Carlo DEM target
:math:`S_K(x_t, t)` at noised buffer samples. Outer loop: integrate the reverse
SDE with the frozen network and push the new samples into the replay buffer.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import torch

from . import sampling
from .checkpoint import load_sampler, sampler_state, save_sampler
from .config import IDEMConfig, preset
from .dem.buffer import ReplayBuffer
from .dem.schedule import GeometricNoiseSchedule
from .dem.sde import sample_prior
from .distributed import DistContext
from .energies.base import Energy
from .energies.registry import get_energy
from .preflight import (BYTES_PER_FLOAT, MemoryEstimate, check_memory, check_sampler_target, check_training_memory,
                        dead_estimator_error)
from .signals import StopSignals
from .training import OuterIterationRecord, RefillSchedule, finish_outer_iteration, refill_buffer, train_step

if TYPE_CHECKING:
    from .io import Samples

__all__ = ["IDEMSampler", "Callback", "OuterIterationRecord", "resolve_device"]

#: ``cb(sampler, record)``, called after every outer iteration of :meth:`IDEMSampler.fit`.
Callback = Callable[["IDEMSampler", OuterIterationRecord], None]

_RANK_SEED_STRIDE = 1_000_003


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available, else CPU; a CUDA request without CUDA is an error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available on this machine; use device='cpu'")
    return dev


class IDEMSampler:
    """Train and sample a neural sampler for ``p(x) ~ exp(-E(x)/kT)`` with iDEM.

    Parameters
    ----------
    energy : Energy or str
        The target, or a registered system name (``"gmm40"``, ``"dw4"``, ``"lj13"``, ``"lj55"``).
    config : IDEMConfig or mapping, optional
        Settings; a mapping overrides the system's preset. Default: the paper's preset.
    device : str or torch.device, optional
        Default CUDA when available, otherwise CPU.
    network : torch.nn.Module, optional
        A custom score network ``(x (B,n,d), t (B,)) -> (B,n,d)`` instead of ``config.network``.

    Examples
    --------
    >>> from idem_md import IDEMSampler
    >>> sampler = IDEMSampler("dw4", config=dict(batch_size=8, num_mc_samples=16, inner_steps=2,
    ...     samples_per_outer=8, sde_steps=10, outer_iterations=1,
    ...     network_options=dict(hidden_irreps="8x0e + 2x1o", n_layers=1)), device="cpu")
    >>> history = sampler.fit(progress=False)
    >>> sampler.sample(4, progress=False).positions.shape
    torch.Size([4, 4, 2])
    """

    def __init__(self, energy: Energy | str, config: IDEMConfig | Mapping[str, Any] | None = None,
                 device: str | torch.device | None = None, network: torch.nn.Module | None = None):
        if isinstance(energy, str):
            energy = get_energy(energy)
        if not isinstance(energy, Energy):
            raise TypeError(f"energy must be an idem_md Energy or a system name, got {type(energy).__name__}")
        self.energy = energy
        if config is None:
            config = preset(energy.name, particle_system=energy.is_particle_system)
        elif isinstance(config, Mapping):
            config = preset(energy.name, particle_system=energy.is_particle_system, **config)
        elif not isinstance(config, IDEMConfig):
            raise TypeError(f"config must be an IDEMConfig or a dict of overrides, got {type(config).__name__}")
        config.validate()
        self.config = config
        self.device = resolve_device(device)
        if any(True for _ in energy.buffers()):
            energy.to(self.device)
        self.schedule = GeometricNoiseSchedule(config.sigma_min, config.sigma_max)
        self.event_shape = (energy.n_particles, energy.spatial_dim)
        self.mean_free = energy.is_particle_system

        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(config.seed)
            if network is None:
                from .nn import build_score_network

                network = build_score_network(config.network, energy.n_particles, energy.spatial_dim,
                                              **config.network_options)
                if config.gaussian_skip_sigma is not None:
                    from .nn.skip import GaussianSkipScore

                    network = GaussianSkipScore(network, self.schedule, config.gaussian_skip_sigma)
        hook = getattr(network, "bind_schedule", None)  # networks whose features depend on the noise level
        if callable(hook):
            hook(self.schedule)
        self.network = network.to(self.device)
        self.dist = DistContext.detect()
        self._train_module = self.network
        if self.dist.enabled:  # identical initial weights (same seed); DDP averages gradients
            from torch.nn.parallel import DistributedDataParallel

            self._train_module = DistributedDataParallel(
                self.network, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.lr)
        self.generator = torch.Generator(device=self.device).manual_seed(self._rank_seed())  # each rank its own noise
        check_memory(MemoryEstimate({"replay buffer (buffer_size)": config.buffer_size * energy.dim * BYTES_PER_FLOAT}),
                     "the replay buffer", device=self.device)
        self.buffer = ReplayBuffer(config.buffer_size, self.event_shape, device=self.device)
        self.refill = RefillSchedule(config.samples_per_outer)  # the next refill's size (adaptive refill)
        self.outer_iteration = 0
        self.counters = {"estimator": 0, "sampling": 0, "evaluation": 0, "correction": 0, "target_check": 0}
        self.density = None  # a fitted DensityModel (fit_density), saved with the checkpoint
        self.nonfinite = {"estimator_perturbations": 0, "estimator_rows": 0, "rejected_buffer_candidates": 0}
        self.history: list[OuterIterationRecord] = []  # one record per outer iteration
        self.inner_step = 0  # inner steps done in the current (unfinished) outer iteration
        self._partial = {"loss": 0.0, "ess": 0.0}
        self._preflight_done = False

    # ----------------------------------------------------------------- training
    @property
    def energy_evaluations(self) -> int:
        """Energy evaluations spent so far, all purposes and all ranks together."""
        return sum(self.counters.values())

    #: Consecutive inner steps with estimator ESS 0 (every perturbation of every row non-finite) that stop ``fit``.
    max_zero_ess_steps: int = 10

    def _budget_left(self) -> float:
        if self.config.energy_budget is None:
            return math.inf
        return self.config.energy_budget - self.counters["estimator"]

    def fit(self, outer_iterations: int | None = None, *, callbacks: Iterable[Callback] = (), progress: bool = True,
            checkpoint_path: str | Path | None = None) -> list[OuterIterationRecord]:
        """Run the outer loop until ``outer_iterations`` in total (resuming from :attr:`outer_iteration`).

        Parameters
        ----------
        outer_iterations : int, optional
            Total outer iterations to reach (default ``config.outer_iterations``).
        callbacks : iterable of callables
            ``cb(sampler, record)`` after every outer iteration, with that iteration's
            :class:`~idem_md.training.OuterIterationRecord`.
        progress : bool
            Show a tqdm progress bar with loss and energy evaluations.
        checkpoint_path : path, optional
            Save here every ``config.checkpoint_every`` outer iterations, at the first inner-step
            boundary after ``config.checkpoint_every_s`` seconds without a save (so a hard kill loses
            at most about that much work), at the end, and when SIGINT or SIGTERM arrives (then
            KeyboardInterrupt / SystemExit is raised after saving).

        Returns
        -------
        list of OuterIterationRecord
            :attr:`history`, one record per outer iteration (``record.loss``, ...).
        """
        from tqdm.auto import tqdm

        target = self.config.outer_iterations if outer_iterations is None else outer_iterations
        if isinstance(target, bool) or not isinstance(target, int) or target < 0:
            raise ValueError(f"outer_iterations must be a non-negative int, got {target!r}")
        cfg = self.config
        self.preflight()
        if len(self.buffer) == 0 and not cfg.pdem:
            self._add_to_buffer(self._prior(self.dist.shard(cfg.samples_per_outer)))
        step_cost = cfg.batch_size * cfg.num_mc_samples  # global, all ranks
        bar = tqdm(total=target, initial=min(self.outer_iteration, target), disable=not (progress and self.dist.is_main),
                   desc=f"iDEM {self.energy.name}", unit="outer")
        last_save = time.monotonic()
        zero_ess_steps = 0
        with StopSignals(enabled=checkpoint_path is not None) as stop:
            try:
                while self.outer_iteration < target and self._budget_left() >= step_cost:
                    t0 = time.perf_counter()
                    while self.inner_step < cfg.inner_steps and self._budget_left() >= step_cost:
                        zero_ess_steps = self._inner_step(zero_ess_steps, checkpoint_path)
                        if self.dist.any(stop.received is not None):
                            self.save(checkpoint_path)
                            stop.raise_now()
                        if checkpoint_path is not None and self.dist.any(self._checkpoint_due(last_save)):
                            self.save(checkpoint_path)  # by wall time, mid-iteration (resumes at this inner step)
                            last_save = time.monotonic()
                    record = self._finish_outer_iteration(t0)
                    bar.update(1)
                    bar.set_postfix(loss=f"{record.loss:.3g}", E_new_median=f"{record.buffer_new_median_energy:.3g}",
                                    evals=f"{self.energy_evaluations:.3g}")
                    for cb in callbacks:
                        cb(self, record)
                    if checkpoint_path is not None and self.outer_iteration % cfg.checkpoint_every == 0:
                        self.save(checkpoint_path)
                        last_save = time.monotonic()
            finally:
                bar.close()
        if checkpoint_path is not None:
            self.save(checkpoint_path)
        return self.history

    def preflight(self) -> None:
        """Checks made before training (:mod:`idem_md.preflight`); :meth:`fit` calls it once.

        A fresh sampler's target is evaluated on a first batch (``TargetCheckError`` naming it when
        nothing is finite, or the energy is constant), and the configuration's memory is estimated
        (``InsufficientMemoryError`` naming the fields to reduce when it cannot fit).
        """
        if self._preflight_done:
            return
        if self.outer_iteration == 0 and self.inner_step == 0 and not self.history:
            check_sampler_target(self)  # a fresh run: is the target usable at all?
        check_training_memory(self)
        self._preflight_done = True

    def _inner_step(self, zero_ess_steps: int, checkpoint_path) -> int:
        """One inner step, its loss and ESS added to the iteration's running sums; a non-finite loss, or
        :attr:`max_zero_ess_steps` steps with ESS 0, stop training. Returns the new count of ESS-0 steps."""
        loss, step_ess = self._train_step()
        if not math.isfinite(loss):
            where = f"outer iteration {self.outer_iteration}, inner step {self.inner_step}"
            raise FloatingPointError(
                f"training loss became {loss} at {where}; the run stopped and the last good "
                f"checkpoint{' at ' + str(checkpoint_path) if checkpoint_path else ''} is kept. "
                f"Try a smaller lr or score_clip."
            )
        zero_ess_steps = zero_ess_steps + 1 if step_ess == 0 else 0
        if zero_ess_steps >= self.max_zero_ess_steps:
            raise dead_estimator_error(self, zero_ess_steps, checkpoint_path)
        self.inner_step += 1
        self._partial["loss"] += loss
        self._partial["ess"] += step_ess
        return zero_ess_steps

    def _checkpoint_due(self, last_save: float) -> bool:
        every = self.config.checkpoint_every_s
        return every is not None and time.monotonic() - last_save >= every

    def _finish_outer_iteration(self, t0: float) -> OuterIterationRecord:
        return finish_outer_iteration(self, t0)

    def _prior(self, n: int) -> torch.Tensor:
        return sample_prior(n, self.event_shape, self.schedule, self.mean_free, generator=self.generator,
                            device=self.device)

    def _train_step(self) -> tuple[float, float]:
        """One gradient step of the DEM regression (iDEM Eq. 9). Returns (loss, mean estimator ESS)."""
        return train_step(self)

    def _refill_buffer(self) -> tuple[float, float]:
        """Outer step: reverse-SDE samples into the buffer; the mean and median energy of those kept."""
        return refill_buffer(self)

    def _add_to_buffer(self, x: torch.Tensor) -> None:
        """Every rank adds every rank's new samples (in rank order): the buffer stays replicated."""
        x = self.dist.gather_rows(x)
        if len(x):
            self.buffer.add(x)

    # ----------------------------------------------------------------- sampling
    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Network score in working coordinates, no gradient. ``(B, n, d), (B,) -> (B, n, d)``."""
        self.network.eval()
        with torch.no_grad():
            return self.network(x, t)

    def _generate(self, n: int, steps: int | None = None, progress: bool = False, *, method: str | None = None,
                  time_grid: str | None = None) -> torch.Tensor:
        """``(n, n_particles, spatial_dim)`` reverse-SDE samples in working coordinates (:func:`idem_md.sampling.generate`)."""
        return sampling.generate(self, n, steps, progress, method=method, time_grid=time_grid)

    def sample(self, n: int, *, steps: int | None = None, compute_energies: bool = True, progress: bool = True,
               max_failed_fraction: float = 0.5):
        """Draw ``n`` samples by integrating the reverse SDE with the trained network.

        Trajectories that diverge (non-finite coordinates) are dropped and counted
        (``metadata["n_diverged"]``, with a warning saying what to change); the call fails only
        when more than ``max_failed_fraction`` of them diverged.

        Parameters
        ----------
        n : int
            Number of trajectories.
        steps : int, optional
            Integrator steps; the default and the step rule come from
            :meth:`IDEMConfig.sampling_integrator` (Heun on the edm grid with half the refill's
            ``sde_steps``, at most 100: 100 for the paper presets; runs from before these fields sample
            as their refill does).
        compute_energies : bool
            Also evaluate the target's energy of each sample (counted under ``"evaluation"``).
        max_failed_fraction : float
            In [0, 1]: the largest tolerated share of diverged trajectories.

        Returns
        -------
        Samples
            The finite positions ``(n - n_diverged, n_particles, spatial_dim)`` in the energy's
            length unit, on the CPU.
        """
        return sampling.sample(self, n, steps=steps, compute_energies=compute_energies, progress=progress,
                               max_failed_fraction=max_failed_fraction, stacklevel=3)

    def fit_density(self, n_samples: int = 5000, *, config=None, steps: int | None = None,
                    progress: bool = True):
        """Fit the CNF density model (flow matching) on ``n_samples`` of this sampler's own samples.

        The iDEM paper's route to NLL and ESS: the fitted :class:`~idem_md.dem.density.DensityModel`
        gives samples with exact log densities and ``log q`` at any point, so that importance
        weights and SMC (:mod:`idem_md.correct`) can correct towards the target. No energy is
        evaluated. The model is kept in :attr:`density` and saved with the checkpoint.

        Parameters
        ----------
        n_samples : int
            Reverse-SDE samples to fit on (diverged ones are dropped).
        config : DensityConfig or mapping, optional
            Network and solver settings (default
            :func:`~idem_md.dem.density.default_density_config`).
        steps : int, optional
            Flow-matching optimiser steps (default ``config.steps``).
        """
        return sampling.fit_density(self, n_samples, config=config, steps=steps, progress=progress)

    def _energy_device(self) -> torch.device:
        dev = self.energy._device()
        return dev if dev is not None else torch.device("cpu")

    def log_prob(self, x: torch.Tensor, *, steps: int = 200, divergence: str = "auto") -> torch.Tensor:
        """Model log density of configurations in the energy's coordinates, by the probability-flow ODE.

        Particle systems: the density on the centre-of-mass-free subspace (inputs are centred).
        Returns ``(B,)`` in nats, including the Jacobian of ``coordinate_scale``.
        """
        return sampling.log_prob(self, x, steps=steps, divergence=divergence)

    def sample_with_log_prob(self, n: int, *, steps: int = 200, divergence: str = "auto",
                             compute_energies: bool = True) -> tuple[Samples, torch.Tensor]:
        """Samples of the probability-flow ODE model and their model log densities.

        Unlike :meth:`sample` (reverse SDE), these samples come from the deterministic flow of
        the same network, integrated from the prior with the divergence accumulated along each
        trajectory (:func:`~idem_md.dem.sample_probability_flow`), so ``log_q`` is the density of
        the points returned and ``exp(-E/kT - log_q)`` are importance weights for them.

        Returns
        -------
        samples : Samples
            ``n`` configurations in the energy's coordinates (energies counted as evaluation).
        log_q : torch.Tensor
            ``(n,)`` log densities in nats, in the energy's length units (``coordinate_scale``
            Jacobian included; the centre-of-mass-free subspace for particle systems).
        """
        return sampling.sample_with_log_prob(self, n, steps=steps, divergence=divergence,
                                             compute_energies=compute_energies)

    # --------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The checkpoint payload (:func:`idem_md.checkpoint.sampler_state`): plain data and tensors,
        the history as dicts."""
        return sampler_state(self)

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint atomically: config, weights, optimiser, buffer, RNG state, counters,
        history and the energy's identity. Under torch.distributed only rank 0 writes."""
        return save_sampler(self, path)

    @classmethod
    def load(cls, path: str | Path, energy: Energy | str | None = None,
             device: str | torch.device | None = None) -> "IDEMSampler":
        """Restore a sampler saved with :meth:`save` (loaded with ``weights_only=True``).

        Parameters
        ----------
        energy : Energy or str, optional
            The target. Default: rebuilt from the checkpoint's registry name. A target
            different from the checkpoint's is refused.
        """
        return load_sampler(cls, path, energy=energy, device=device)

    def _rank_seed(self) -> int:
        """This rank's seed: ``seed + rank * _RANK_SEED_STRIDE`` (each rank draws its own noise)."""
        return self.config.seed + self.dist.rank * _RANK_SEED_STRIDE
