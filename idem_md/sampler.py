"""IDEMSampler: the iDEM bi-level training loop (Algorithm 1 of arXiv:2402.06121).

Inner loop: regress the score network onto the Monte-Carlo DEM target
:math:`S_K(x_t, t)` at noised buffer samples. Outer loop: integrate the reverse
SDE with the frozen network and push the new samples into the replay buffer.
"""

from __future__ import annotations

import math
import os
import signal
import warnings
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import torch

from .checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointError, atomic_save, load_checkpoint
from .config import IDEMConfig, preset
from .dem.buffer import ReplayBuffer
from .dem.estimator import estimate_dem_score
from .dem.schedule import GeometricNoiseSchedule
from .distributed import DistContext
from .preflight import (BYTES_PER_FLOAT, InsufficientMemoryError, MemoryEstimate, TargetCheckError,
                        activation_bytes_per_configuration, check_memory, check_target)
from .dem.sde import degrees_of_freedom, integrate_reverse_sde, probability_flow_log_prob, remove_mean, sample_prior
from .energies.base import Energy
from .energies.registry import get_energy
from .nn.graphs import graphed_or_eager

if TYPE_CHECKING:
    from .io import Samples

__all__ = ["IDEMSampler", "Callback", "resolve_device"]

Callback = Callable[["IDEMSampler", dict], None]


_RANK_SEED_STRIDE = 1_000_003


class _StopSignals:
    """Turn SIGINT/SIGTERM into a flag checked between inner steps, so the loop can save first."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.received: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame):
        if self.received is not None:  # a second signal: stop at once
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self):
        if self.enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False

    def raise_now(self):
        if self.received == signal.SIGTERM:
            raise SystemExit(128 + signal.SIGTERM)
        raise KeyboardInterrupt


def _counted(sizes: list[int], bar) -> Iterable[int]:
    """Yield each batch size, advancing ``bar`` by it when the caller asks for the next one; close it at the end."""
    for m in sizes:
        yield m
        bar.update(m)
    bar.close()


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
        self.network = network.to(self.device)
        self.dist = DistContext.detect()
        self._train_module = self.network
        if self.dist.enabled:  # identical initial weights (same seed); DDP averages gradients
            from torch.nn.parallel import DistributedDataParallel

            self._train_module = DistributedDataParallel(
                self.network, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.lr)
        # Each rank draws its own noise: rank r uses seed + r * _RANK_SEED_STRIDE.
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed + self.dist.rank * _RANK_SEED_STRIDE)
        check_memory(MemoryEstimate({"replay buffer (buffer_size)": config.buffer_size * energy.dim * BYTES_PER_FLOAT}),
                     "the replay buffer", device=self.device)
        self.buffer = ReplayBuffer(config.buffer_size, self.event_shape, device=self.device)
        self.outer_iteration = 0
        self.counters = {"estimator": 0, "sampling": 0, "evaluation": 0, "correction": 0, "target_check": 0}
        self.density = None  # a fitted DensityModel (fit_density), saved with the checkpoint
        self.nonfinite = {"estimator_perturbations": 0, "estimator_rows": 0, "rejected_buffer_candidates": 0}
        self.history: list[dict[str, float]] = []
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
            checkpoint_path: str | Path | None = None) -> list[dict[str, float]]:
        """Run the outer loop until ``outer_iterations`` in total (resuming from :attr:`outer_iteration`).

        Parameters
        ----------
        outer_iterations : int, optional
            Total outer iterations to reach (default ``config.outer_iterations``).
        callbacks : iterable of callables
            ``cb(sampler, record)`` after every outer iteration, with that iteration's record.
        progress : bool
            Show a tqdm progress bar with loss and energy evaluations.
        checkpoint_path : path, optional
            Save here every ``config.checkpoint_every`` outer iterations, at the first inner-step
            boundary after ``config.checkpoint_every_s`` seconds without a save (so a hard kill loses
            at most about that much work), at the end, and when SIGINT or SIGTERM arrives (then
            KeyboardInterrupt / SystemExit is raised after saving).

        Returns
        -------
        list of dict
            :attr:`history`, one record per outer iteration.
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
        with _StopSignals(enabled=checkpoint_path is not None) as stop:
            try:
                while self.outer_iteration < target and self._budget_left() >= step_cost:
                    t0 = time.perf_counter()
                    while self.inner_step < cfg.inner_steps and self._budget_left() >= step_cost:
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
                            self._raise_dead_estimator(zero_ess_steps, checkpoint_path)
                        self.inner_step += 1
                        self._partial["loss"] += loss
                        self._partial["ess"] += step_ess
                        if self.dist.any(stop.received is not None):
                            self.save(checkpoint_path)
                            stop.raise_now()
                        if checkpoint_path is not None and self.dist.any(self._checkpoint_due(last_save)):
                            self.save(checkpoint_path)  # by wall time, mid-iteration (resumes at this inner step)
                            last_save = time.monotonic()
                    record = self._finish_outer_iteration(t0)
                    bar.update(1)
                    bar.set_postfix(loss=f"{record['loss']:.3g}", E_new_median=f"{record['buffer_new_median_energy']:.3g}",
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
            self._check_target()  # a fresh run: is the target usable at all?
        self._check_training_memory()
        self._preflight_done = True

    def _check_target(self) -> None:
        """Refuse a target whose energies or forces are non-finite (or constant) on a first batch
        (``min(batch_size, 16)`` rows of the buffer, else of the prior; a private generator, so the
        run's random stream is untouched). Under torch.distributed rank 0 evaluates and every rank
        stops with it. Counted under ``counters["target_check"]``."""
        m = min(self.config.batch_size, 16)
        gen = torch.Generator(device=self.device).manual_seed(self.config.seed)
        if len(self.buffer):
            x, where = self.buffer.contents()[:m], "the replay buffer"
        else:
            x = sample_prior(m, self.event_shape, self.schedule, self.mean_free, generator=gen, device=self.device)
            where = f"the prior (sigma_max={self.config.sigma_max:g}, coordinate_scale={self.config.coordinate_scale:g})"
        before, failure = self.energy.n_evaluations, None
        if self.dist.is_main:
            try:
                check_target(self.energy, (x * self.config.coordinate_scale).to(self._energy_device()), where)
            except Exception as exc:  # noqa: BLE001 - re-raised below, after every rank has heard of it
                failure = exc
        self.counters["target_check"] += int(self.dist.sum(self.energy.n_evaluations - before))
        if self.dist.any(failure is not None):
            raise failure or TargetCheckError(f"the target check of {self.energy.name!r} failed on rank 0 "
                                              "(its message says why)")

    def _check_training_memory(self) -> None:
        """Refuse (one line naming the fields) a training configuration that cannot fit in memory."""
        cfg, n, d = self.config, self.energy.n_particles, self.energy.spatial_dim
        B = self.dist.shard(cfg.batch_size)
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        probe = sample_prior(2, self.event_shape, self.schedule, self.mean_free, generator=gen, device=self.device)
        act = activation_bytes_per_configuration(self.network, probe, torch.full((2,), 0.5, device=self.device))
        chunk = min(cfg.estimator_chunk_size, B * cfg.num_mc_samples)  # configurations per energy call
        n_params = sum(p.numel() for p in self.network.parameters())
        estimate = MemoryEstimate({
            "network activations (batch_size)": act * B,
            "estimator chunk (estimator_chunk_size, num_mc_samples)": chunk * 3 * n * d * BYTES_PER_FLOAT,
            "batch tensors (batch_size)": 8 * B * n * d * BYTES_PER_FLOAT,
            "reverse-SDE batch (sample_batch_size, samples_per_outer)":
                3 * min(cfg.sample_batch_size, cfg.samples_per_outer) * n * d * BYTES_PER_FLOAT,
            "network and optimiser (network_options)": 4 * n_params * BYTES_PER_FLOAT,
        })
        if self.device.type == "cpu":  # the processes of this node share its memory
            local = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if self.dist.enabled else 1
            estimate = MemoryEstimate({name: b * local for name, b in estimate.parts.items()})
        refused = None
        try:
            check_memory(estimate, f"training {self.energy.name} (batch_size={cfg.batch_size}, "
                         f"num_mc_samples={cfg.num_mc_samples})", device=self.device)
        except InsufficientMemoryError as exc:
            refused = exc
        if self.dist.any(refused is not None):  # every rank stops together (no rank left in a collective)
            raise refused or InsufficientMemoryError(f"training {self.energy.name}: another rank ran out of memory "
                                                     "in the pre-flight estimate; reduce batch_size")

    def _raise_dead_estimator(self, steps: int, checkpoint_path) -> None:
        kept = f"; the last good checkpoint at {checkpoint_path} is kept" if checkpoint_path else ""
        raise FloatingPointError(
            f"the DEM estimator's ESS was 0 for {steps} consecutive inner steps (outer iteration {self.outer_iteration}, "
            f"inner step {self.inner_step}): target {self.energy.name!r} returned non-finite energies or forces for "
            f"every perturbation of every configuration, so nothing is being learned; the run stopped{kept}. Check "
            "the target around the buffer samples (or a smaller sigma_max / coordinate_scale)")

    def _checkpoint_due(self, last_save: float) -> bool:
        every = self.config.checkpoint_every_s
        return every is not None and time.monotonic() - last_save >= every

    def _finish_outer_iteration(self, t0: float) -> dict[str, float]:
        """Outer step (refill the buffer) and the iteration's record; ``t0``: the iteration's start
        (``time.perf_counter``), so that its wall time covers the inner steps and the refill."""
        steps = max(self.inner_step, 1)
        new_mean, new_median = (float("nan"),) * 2 if self.config.pdem else self._refill_buffer()
        self.outer_iteration += 1
        record = {
            "outer_iteration": self.outer_iteration,
            "loss": self._partial["loss"] / steps,
            "estimator_ess": self._partial["ess"] / steps,
            # The mean is dominated by rare near-overlaps (LJ's r^-12 wall); the median shows the bulk.
            "buffer_new_mean_energy": new_mean,
            "buffer_new_median_energy": new_median,
            "energy_evaluations": self.energy_evaluations,
            "estimator_evaluations": self.counters["estimator"],
            "wall_time_s": time.perf_counter() - t0,
            "nonfinite_perturbations": self.nonfinite["estimator_perturbations"],
            "rejected_buffer_candidates": self.nonfinite["rejected_buffer_candidates"],
        }
        self.history.append(record)
        self.inner_step = 0
        self._partial = {"loss": 0.0, "ess": 0.0}
        return record

    def _prior(self, n: int) -> torch.Tensor:
        return sample_prior(n, self.event_shape, self.schedule, self.mean_free, generator=self.generator,
                            device=self.device)

    def _train_step(self) -> tuple[float, float]:
        """One gradient step of the DEM regression (iDEM Eq. 9). Returns (loss, mean estimator ESS)."""
        cfg = self.config
        B = self.dist.shard(cfg.batch_size)  # this rank's share of the global batch
        x0 = self._prior(B) if cfg.pdem else self.buffer.sample(B, generator=self.generator)  # (B, n, d)
        t = torch.rand(B, generator=self.generator, device=self.device)  # (B,)
        h = self.schedule.h(t)
        noise = torch.randn(x0.shape, generator=self.generator, device=self.device)
        x_t = x0 + h.sqrt()[:, None, None] * noise
        if self.mean_free:
            x_t = remove_mean(x_t)
        before = self.energy.n_evaluations
        est = estimate_dem_score(self.energy, x_t, t, self.schedule, cfg.num_mc_samples,
                                 coordinate_scale=cfg.coordinate_scale, score_clip=cfg.score_clip,
                                 chunk_size=cfg.estimator_chunk_size, generator=self.generator,
                                 antithetic=cfg.estimator_antithetic, control_variate_scale=cfg.estimator_cv_scale,
                                 target_ess=cfg.estimator_target_ess, min_mc_samples=cfg.estimator_min_mc_samples)
        self.counters["estimator"] += int(self.dist.sum(self.energy.n_evaluations - before))
        self.nonfinite["estimator_perturbations"] += int(self.dist.sum(est.n_nonfinite))
        self.nonfinite["estimator_rows"] += int(self.dist.sum(est.n_all_nonfinite))

        self.network.train()
        pred = self._train_module(x_t, t)  # (B, n, d); DDP all-reduces the gradients
        
        err = (pred - est.score).pow(2).flatten(1).mean(1)  # (B,)
        weight = h + cfg.loss_weight_eps if cfg.loss_weighting == "h_plus_eps" else torch.ones_like(h)
        loss = (weight * err).mean()
        self.optimizer.zero_grad(set_to_none=True)
        global_loss = self.dist.sum(float(loss.detach())) / self.dist.world_size
        ess = self.dist.sum(float(est.ess.mean())) / self.dist.world_size
        if not math.isfinite(global_loss):  # every rank sees the same value, so all stop together
            return global_loss, ess
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.network.parameters(), cfg.grad_clip))
        if not math.isfinite(grad_norm):  # never let NaN/inf weights reach a checkpoint
            self.optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(
                f"gradient norm became {grad_norm} at outer iteration {self.outer_iteration}, inner step "
                f"{self.inner_step} (finite loss {global_loss:.4g}); the weights were not updated and the last good "
                "checkpoint is kept. Try a smaller lr or score_clip."
            )
        self.optimizer.step()
        return global_loss, ess

    def _refill_buffer(self) -> tuple[float, float]:
        """Outer step: reverse-SDE samples with the frozen network go into the buffer. Candidates with
        non-finite coordinates or energies are rejected (and counted). Returns the mean and median
        energy of the kept candidates (all ranks)."""
        x = self._generate(self.dist.shard(self.config.samples_per_outer))  # working coordinates, this rank's share
        finite = torch.isfinite(x).flatten(1).all(1)
        x = x[finite]
        before = self.energy.n_evaluations
        e = self.energy.energy(x * self.config.coordinate_scale) if len(x) else torch.zeros(0)
        self.counters["sampling"] += int(self.dist.sum(self.energy.n_evaluations - before))
        ok = torch.isfinite(e).to(x.device)
        self.nonfinite["rejected_buffer_candidates"] += int(self.dist.sum(int((~finite).sum()) + int((~ok).sum())))
        kept_e = e[ok.to(e.device)].detach().double()
        self._add_to_buffer(x[ok])
        everyone = self.dist.gather_rows(kept_e)  # every rank's kept energies (collective)
        if not len(everyone):
            return float("nan"), float("nan")
        return float(everyone.mean()), float(everyone.median())

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

    def _generate(self, n: int, steps: int | None = None, progress: bool = False) -> torch.Tensor:
        from tqdm.auto import tqdm

        steps = self.config.sde_steps if steps is None else steps
        out = []
        sizes = [min(self.config.sample_batch_size, n - i) for i in range(0, n, self.config.sample_batch_size)]
        bar = tqdm(total=n, disable=not progress, desc=f"reverse SDE ({steps} steps)", unit="sample",
                   mininterval=1.0)
        score_fn = graphed_or_eager(self.score, self.device, self.config.cuda_graphs)  # CUDA graphs: opt-in
        for m in _counted(sizes, bar):  # the bar advances by m once each batch is done
            x1 = self._prior(m)
            out.append(integrate_reverse_sde(score_fn, x1, self.schedule, steps=steps,
                                             diffusion_scale=self.config.diffusion_scale,
                                             mean_free=self.mean_free, generator=self.generator,
                                             method=self.config.sde_method, time_grid=self.config.sde_time_grid,
                                             grid_rho=self.config.sde_grid_rho,
                                             exponential_sigma=self.config.sde_exponential_sigma))
        if not out:
            return torch.zeros((0, *self.event_shape), device=self.device)
        return torch.cat(out)

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
            Integrator steps (default ``config.sde_steps``; the step rule is ``config.sde_method``).
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
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if not 0 <= max_failed_fraction <= 1:
            raise ValueError(f"max_failed_fraction must be in [0, 1], got {max_failed_fraction!r}")
        steps = self.config.sde_steps if steps is None else steps
        dim, m = self.energy.dim, min(n, self.config.sample_batch_size)
        check_memory(MemoryEstimate({"the samples (n)": 3 * n * dim * BYTES_PER_FLOAT,
                                     "reverse-SDE batch (sample_batch_size)": 3 * m * dim * BYTES_PER_FLOAT}),
                     f"sampling n={n} configurations of {self.energy.name}", device=self.device)
        if isinstance(steps, int) and steps < 20:
            warnings.warn(f"steps={steps} reverse-SDE steps is far too few for accurate samples (the paper uses "
                          "1000; fewer than ~100 leaves samples far from the target)", stacklevel=2)
        x = self._generate(n, steps, progress) * self.config.coordinate_scale
        finite = torch.isfinite(x).flatten(1).all(1)
        n_bad = int((~finite).sum())
        if n_bad > max_failed_fraction * n or n_bad == n:
            raise FloatingPointError(
                f"{n_bad} of {n} reverse-SDE trajectories diverged (non-finite coordinates), more than "
                f"max_failed_fraction={max_failed_fraction}; train longer, or sample with more steps "
                f"(steps={steps} now)")
        if n_bad:
            warnings.warn(f"{n_bad} of {n} reverse-SDE trajectories diverged and were dropped; "
                          f"{n - n_bad} samples kept (more steps than {steps} or more training reduce this)",
                          stacklevel=2)
        samples = self._to_samples(x[finite], compute_energies, source="idem")
        samples.metadata["n_diverged"] = n_bad
        return samples

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
        from .dem.density import DensityModel, default_density_config

        data = self.sample(n_samples, compute_energies=False, progress=progress).positions
        config = default_density_config(self.mean_free) if config is None else config
        density = DensityModel(self.energy.n_particles, self.energy.spatial_dim, self.mean_free, config)
        density.fit(data.double(), steps=steps, progress=progress)
        self.density = density
        return density

    def _to_samples(self, x: torch.Tensor, compute_energies: bool, source: str):
        """``Samples`` on the CPU from positions in the energy's units; energies of the finite rows are
        counted under ``"evaluation"`` (non-finite rows get NaN)."""
        from .io import Samples

        x = x.detach().cpu()
        energies = None
        if compute_energies:
            finite = torch.isfinite(x).flatten(1).all(1)
            energies = torch.full((len(x),), float("nan"))
            before = self.energy.n_evaluations
            if finite.any():
                energies[finite] = self.energy.energy(x[finite].to(self._energy_device())).detach().cpu().to(energies)
            self.counters["evaluation"] += self.energy.n_evaluations - before
        meta = {"system": self.energy.name, "kT": self.energy.kT, "source": source,
                "length_unit": self.energy.length_unit,  # trajectory files convert real units (idem_md.samples)
                "outer_iterations": self.outer_iteration, "energy_evaluations": dict(self.counters)}
        return Samples(x, energies, meta)

    def _energy_device(self) -> torch.device:
        dev = self.energy._device()
        return dev if dev is not None else torch.device("cpu")

    def log_prob(self, x: torch.Tensor, *, steps: int = 200, divergence: str = "auto") -> torch.Tensor:
        """Model log density of configurations in the energy's coordinates, by the probability-flow ODE.

        Particle systems: the density on the centre-of-mass-free subspace (inputs are centred).
        Returns ``(B,)`` in nats, including the Jacobian of ``coordinate_scale``.
        """
        x3 = self.energy._validate(x).to(self.device, torch.float32)
        if self.mean_free:
            x3 = remove_mean(x3)
        y = x3 / self.config.coordinate_scale
        self.network.eval()
        logp = probability_flow_log_prob(self.network, y, self.schedule, steps=steps, mean_free=self.mean_free,
                                         divergence=divergence, generator=self.generator)
        dof = degrees_of_freedom(self.energy.n_particles, self.energy.spatial_dim, self.mean_free)
        return logp - dof * math.log(self.config.coordinate_scale)

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
        from .dem import sample_probability_flow

        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        self.network.eval()
        xs, lqs = [], []
        for i in range(0, n, self.config.sample_batch_size):
            m = min(self.config.sample_batch_size, n - i)
            x0, lq = sample_probability_flow(self.network, self._prior(m), self.schedule, steps=steps,
                                             mean_free=self.mean_free, divergence=divergence, generator=self.generator)
            xs.append(x0)
            lqs.append(lq)
        dof = degrees_of_freedom(self.energy.n_particles, self.energy.spatial_dim, self.mean_free)
        log_q = torch.cat(lqs).detach().cpu() - dof * math.log(self.config.coordinate_scale)
        samples = self._to_samples(torch.cat(xs) * self.config.coordinate_scale, compute_energies,
                                   source="idem-probability-flow")
        return samples, log_q

    # --------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "energy": self.energy.identity(),
            "config": self.config.to_dict(),
            "network": self.network.state_dict(),
            "network_class": type(self.network).__name__,
            "optimizer": self.optimizer.state_dict(),
            "buffer": self.buffer.state_dict(),
            "generator": self.generator.get_state(),
            "rank_generators": self.dist.gather_objects(self.generator.get_state().cpu()),
            "outer_iteration": self.outer_iteration,
            "inner_step": self.inner_step,
            "partial": dict(self._partial),
            "counters": dict(self.counters),
            "nonfinite": dict(self.nonfinite),
            "history": list(self.history),
            "density": None if self.density is None else self.density.to_payload(),
        }

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint atomically: config, weights, optimiser, buffer, RNG state, counters,
        history and the energy's identity. Under torch.distributed only rank 0 writes."""
        state = self.state_dict()  # collective: every rank takes part
        if self.dist.is_main:
            atomic_save(state, path)
        self.dist.barrier()
        return Path(path)

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
        payload = load_checkpoint(path)
        ident = payload["energy"]
        if energy is None:
            try:
                energy = get_energy(ident["name"])
            except ValueError:
                raise CheckpointError(f"{path} was trained on {ident['name']!r}, which is not a registered system; "
                                      "pass energy= explicitly") from None
        elif isinstance(energy, str):
            energy = get_energy(energy)
        mine = energy.identity()
        diff = sorted(k for k in set(ident) | set(mine) if ident.get(k) != mine.get(k))
        if diff:
            detail = ", ".join(f"{k}: checkpoint {ident.get(k)!r} vs given {mine.get(k)!r}" for k in diff)
            raise CheckpointError(f"{path} is a checkpoint for another system ({detail})")
        sampler = cls(energy, IDEMConfig.from_dict(payload["config"]), device=device)
        if payload.get("network_class") != type(sampler.network).__name__:
            raise CheckpointError(f"{path} holds a {payload.get('network_class')} network, the config builds "
                                  f"{type(sampler.network).__name__}")
        try:
            sampler.network.load_state_dict(payload["network"])
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: network shape does not match the configured network: {str(exc)[:300]}") from None
        sampler.optimizer.load_state_dict(payload["optimizer"])
        sampler.buffer.load_state_dict({k: v.to(sampler.device) if torch.is_tensor(v) else v
                                        for k, v in payload["buffer"].items()})
        gens = payload.get("rank_generators") or [payload["generator"]]
        restored = False
        if len(gens) == sampler.dist.world_size:  # generator states are CPU byte tensors
            try:
                sampler.generator.set_state(gens[sampler.dist.rank].cpu())
                restored = True
            except RuntimeError:  # a CUDA generator's state on a CPU generator, or the reverse
                pass
        if not restored:  # other number of ranks or device type: fresh, still deterministic, per-rank streams
            sampler.generator.manual_seed(sampler.config.seed + sampler.dist.rank * _RANK_SEED_STRIDE
                                          + int(payload["outer_iteration"]))
        sampler.outer_iteration = int(payload["outer_iteration"])
        sampler.inner_step = int(payload.get("inner_step", 0))
        sampler._partial = dict(payload.get("partial", {"loss": 0.0, "ess": 0.0}))
        sampler.counters.update(payload["counters"])
        sampler.nonfinite.update(payload["nonfinite"])
        sampler.history = list(payload["history"])
        if payload.get("density") is not None:  # checkpoints from before the density model have none
            from .dem.density import DensityModel

            sampler.density = DensityModel.from_payload(payload["density"])
        return sampler
