"""IDEMSampler: the iDEM bi-level training loop (Algorithm 1 of arXiv:2402.06121).

Inner loop: regress the score network onto the Monte-Carlo DEM target
:math:`S_K(x_t, t)` at noised buffer samples. Outer loop: integrate the reverse
SDE with the frozen network and push the new samples into the replay buffer.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch

from .checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointError, atomic_save, load_checkpoint
from .config import IDEMConfig, preset
from .dem.buffer import ReplayBuffer
from .dem.estimator import estimate_dem_score
from .dem.schedule import GeometricNoiseSchedule
from .dem.sde import integrate_reverse_sde, probability_flow_log_prob, remove_mean, sample_prior
from .energies.base import Energy
from .energies.registry import get_energy

__all__ = ["IDEMSampler", "Callback", "resolve_device"]

Callback = Callable[["IDEMSampler", dict], None]


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
    ...     network_options=dict(hidden_scalars=8, hidden_vectors=2, num_layers=1)), device="cpu")
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
        self.network = network.to(self.device)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.lr)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.buffer = ReplayBuffer(config.buffer_size, self.event_shape, device=self.device)
        self.outer_iteration = 0
        self.counters = {"estimator": 0, "sampling": 0, "evaluation": 0}
        self.nonfinite = {"estimator_perturbations": 0, "estimator_rows": 0, "rejected_buffer_candidates": 0}
        self.history: list[dict[str, float]] = []

    # ----------------------------------------------------------------- training
    @property
    def energy_evaluations(self) -> int:
        """Energy evaluations spent so far, all purposes together."""
        return sum(self.counters.values())

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
            Save here every ``config.checkpoint_every`` outer iterations and at the end.

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
        if len(self.buffer) == 0 and not cfg.pdem:
            self.buffer.add(self._prior(cfg.samples_per_outer))
        step_cost = cfg.batch_size * cfg.num_mc_samples
        bar = tqdm(total=target, initial=min(self.outer_iteration, target), disable=not progress,
                   desc=f"iDEM {self.energy.name}", unit="outer")
        try:
            while self.outer_iteration < target and self._budget_left() >= step_cost:
                t0 = time.perf_counter()
                losses, ess = [], []
                for _ in range(cfg.inner_steps):
                    if self._budget_left() < step_cost:
                        break
                    loss, step_ess = self._train_step()
                    if not math.isfinite(loss):
                        where = f"outer iteration {self.outer_iteration}, inner step {len(losses)}"
                        raise FloatingPointError(
                            f"training loss became {loss} at {where}; the run stopped and the last good "
                            f"checkpoint{' at ' + str(checkpoint_path) if checkpoint_path else ''} is kept. "
                            f"Try a smaller lr or score_clip."
                        )
                    losses.append(loss)
                    ess.append(step_ess)
                new_energy = float("nan")
                if not cfg.pdem:
                    new_energy = self._refill_buffer()
                self.outer_iteration += 1
                record = {
                    "outer_iteration": self.outer_iteration,
                    "loss": sum(losses) / max(len(losses), 1),
                    "estimator_ess": sum(ess) / max(len(ess), 1),
                    "buffer_new_mean_energy": new_energy,
                    "energy_evaluations": self.energy_evaluations,
                    "estimator_evaluations": self.counters["estimator"],
                    "wall_time_s": time.perf_counter() - t0,
                    "nonfinite_perturbations": self.nonfinite["estimator_perturbations"],
                    "rejected_buffer_candidates": self.nonfinite["rejected_buffer_candidates"],
                }
                self.history.append(record)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3g}", E_new=f"{new_energy:.3g}",
                                evals=f"{self.energy_evaluations:.3g}")
                for cb in callbacks:
                    cb(self, record)
                if checkpoint_path is not None and self.outer_iteration % cfg.checkpoint_every == 0:
                    self.save(checkpoint_path)
        finally:
            bar.close()
        if checkpoint_path is not None:
            self.save(checkpoint_path)
        return self.history

    def _prior(self, n: int) -> torch.Tensor:
        return sample_prior(n, self.event_shape, self.schedule, self.mean_free, generator=self.generator,
                            device=self.device)

    def _train_step(self) -> tuple[float, float]:
        """One gradient step of the DEM regression (iDEM Eq. 9). Returns (loss, mean estimator ESS)."""
        cfg = self.config
        B = cfg.batch_size
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
                                 chunk_size=cfg.estimator_chunk_size, generator=self.generator)
        self.counters["estimator"] += self.energy.n_evaluations - before
        self.nonfinite["estimator_perturbations"] += est.n_nonfinite
        self.nonfinite["estimator_rows"] += est.n_all_nonfinite

        self.network.train()
        pred = self.network(x_t, t)  # (B, n, d)
        err = (pred - est.score).pow(2).flatten(1).mean(1)  # (B,)
        weight = h + cfg.loss_weight_eps if cfg.loss_weighting == "h_plus_eps" else torch.ones_like(h)
        loss = (weight * err).mean()
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            return float(loss), float(est.ess.mean())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), cfg.grad_clip)
        self.optimizer.step()
        return float(loss.detach()), float(est.ess.mean())

    def _refill_buffer(self) -> float:
        """Outer step: reverse-SDE samples with the frozen network go into the buffer. Candidates with
        non-finite coordinates or energies are rejected (and counted). Returns their mean energy."""
        x = self._generate(self.config.samples_per_outer, progress=False)  # working coordinates
        finite = torch.isfinite(x).flatten(1).all(1)
        x = x[finite]
        before = self.energy.n_evaluations
        e = self.energy.energy(x * self.config.coordinate_scale) if len(x) else torch.zeros(0)
        self.counters["sampling"] += self.energy.n_evaluations - before
        ok = torch.isfinite(e).to(x.device)
        self.nonfinite["rejected_buffer_candidates"] += int((~finite).sum()) + int((~ok).sum())
        if ok.any():
            self.buffer.add(x[ok])
        return float(e[ok.to(e.device)].mean()) if ok.any() else float("nan")

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
        for m in tqdm(sizes, disable=not progress, desc="reverse SDE", unit="batch"):
            x1 = self._prior(m)
            out.append(integrate_reverse_sde(self.score, x1, self.schedule, steps=steps,
                                             diffusion_scale=self.config.diffusion_scale,
                                             mean_free=self.mean_free, generator=self.generator))
        if not out:
            return torch.zeros((0, *self.event_shape), device=self.device)
        return torch.cat(out)

    def sample(self, n: int, *, steps: int | None = None, compute_energies: bool = True, progress: bool = True):
        """Draw ``n`` samples by integrating the reverse SDE with the trained network.

        Parameters
        ----------
        n : int
            Number of samples.
        steps : int, optional
            Euler-Maruyama steps (default ``config.sde_steps``).
        compute_energies : bool
            Also evaluate the target's energy of each sample (counted under ``"evaluation"``).

        Returns
        -------
        Samples
            Positions ``(n, n_particles, spatial_dim)`` in the energy's length unit, on the CPU.
        """
        from .io import Samples

        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        x = self._generate(n, steps, progress) * self.config.coordinate_scale
        x = x.detach().cpu()
        energies = None
        if compute_energies:
            finite = torch.isfinite(x).flatten(1).all(1)
            energies = torch.full((n,), float("nan"))
            before = self.energy.n_evaluations
            if finite.any():
                energies[finite] = self.energy.energy(x[finite].to(self._energy_device())).detach().cpu().to(energies)
            self.counters["evaluation"] += self.energy.n_evaluations - before
        meta = {"system": self.energy.name, "kT": self.energy.kT, "source": "idem",
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
        logp = probability_flow_log_prob(self.score, y, self.schedule, steps=steps, mean_free=self.mean_free,
                                         divergence=divergence, generator=self.generator)
        dof = (self.energy.n_particles - 1) * self.energy.spatial_dim if self.mean_free else self.energy.dim
        return logp - dof * math.log(self.config.coordinate_scale)

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
            "outer_iteration": self.outer_iteration,
            "counters": dict(self.counters),
            "nonfinite": dict(self.nonfinite),
            "history": list(self.history),
        }

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint atomically: config, weights, optimiser, buffer, RNG state, counters,
        history and the energy's identity."""
        return atomic_save(self.state_dict(), path)

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
        sampler.generator.set_state(payload["generator"].cpu())  # generator states are CPU byte tensors
        sampler.outer_iteration = int(payload["outer_iteration"])
        sampler.counters.update(payload["counters"])
        sampler.nonfinite.update(payload["nonfinite"])
        sampler.history = list(payload["history"])
        return sampler
