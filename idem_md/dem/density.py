r"""A continuous normalising flow density ``q(x)`` fitted by (OT) conditional flow matching.

This is how iDEM (Akhound-Sadegh et al. 2024) evaluates NLL and ESS: a vector field
``v(z, t)`` is regressed onto the straight-line conditional velocities ``z_1 - z_0`` between a
prior draw ``z_0 ~ N(0, I)`` (flow time 0) and a data point ``z_1`` (time 1), with the pairs of a
minibatch matched by exact optimal transport. The ODE ``dz/dt = v`` then defines a density by the
instantaneous change of variables,

.. math::

    \log q_1(z(1)) = \log p_0(z(0)) - \int_0^1 \nabla \cdot v(z(t), t)\, dt,

integrated with an adaptive solver (dopri5, ``atol = rtol = 1e-5`` as in the iDEM code). The
network works in scaled coordinates ``z = (x - loc) / scale``; densities in the energy's length
unit include the Jacobian ``-dof * log(scale)``. For particle systems the data are centred, the
prior is the standard Gaussian on the ``(n-1) d``-dimensional mean-free subspace and so is ``q``.

The hyperparameters (:class:`DensityConfig`, :func:`default_density_config`) live in
:mod:`idem_md.dem.density_config` and are re-exported here; a fitted model travels as plain data
and tensors (:meth:`DensityModel.to_payload`, no pickled objects).

Examples
--------
>>> import torch
>>> x = 2.0 + 0.5 * torch.randn(512, 1, 1, generator=torch.Generator().manual_seed(0))
>>> model = DensityModel(1, 1, mean_free=False, config=DensityConfig(steps=50, hidden_dim=16, n_layers=2))
>>> losses = model.fit(x, progress=False)
>>> xs, log_q = model.sample_with_log_prob(8)
>>> xs.shape, log_q.shape
(torch.Size([8, 1, 1]), torch.Size([8]))
>>> bool(torch.allclose(model.log_prob(xs), log_q, atol=1e-3))
True
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np
import torch

from ..nn.egnn import EGNNConfig, EGNNVectorField
from .cnf import Dynamics, MLPField
from .density_config import DensityConfig, _check_int, default_density_config
from .sde import EXACT_DIVERGENCE_MAX_DIM, degrees_of_freedom, remove_mean

__all__ = ["DensityConfig", "DensityModel", "default_density_config"]

_PAYLOAD_KIND = "idem_md.cnf_density"
_ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")  # take max_num_steps
_MAX_SOLVER_STEPS = 20_000  # per solve; beyond that the batch is split and finally marked failed


class DensityModel(torch.nn.Module):
    """CNF density of configurations ``(n_particles, spatial_dim)``, fitted to samples by flow matching.

    Parameters
    ----------
    n_particles, spatial_dim : int
        Shape of one configuration.
    mean_free : bool
        Particle system: densities on the centre-of-mass-free subspace, E(n)-equivariant network.
    config : DensityConfig, mapping or None
        Hyperparameters (None: defaults).

    Attributes
    ----------
    scale : torch.Tensor
        0-d buffer, length unit of the network's coordinates (RMS per degree of freedom of the
        centred data); NaN until :meth:`fit`.
    loc : torch.Tensor
        ``(n_particles, spatial_dim)`` buffer, data mean (zero for particle systems).
    """

    def __init__(self, n_particles: int, spatial_dim: int, mean_free: bool,
                 config: DensityConfig | Mapping[str, Any] | None = None):
        super().__init__()
        _check_int("n_particles", n_particles, 2 if mean_free else 1)
        _check_int("spatial_dim", spatial_dim, 1)
        if not isinstance(mean_free, bool):
            raise TypeError(f"mean_free must be a bool, got {type(mean_free).__name__}")
        if isinstance(config, Mapping):
            config = DensityConfig(**dict(config))
        if config is not None and not isinstance(config, DensityConfig):
            raise TypeError(f"config must be a DensityConfig, a mapping of its fields or None, "
                            f"got {type(config).__name__}")
        self.config = cfg = config or DensityConfig()
        self.n_particles, self.spatial_dim, self.mean_free = n_particles, spatial_dim, mean_free
        self.dof = degrees_of_freedom(n_particles, spatial_dim, mean_free)
        kind = cfg.network if cfg.network != "auto" else ("egnn" if mean_free else "mlp")
        if kind == "egnn" and not mean_free:
            raise ValueError("network='egnn' needs mean_free=True (its field is translation invariant)")
        self.network_kind = kind
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            if kind == "egnn":
                self.field = EGNNVectorField(n_particles, spatial_dim, EGNNConfig(hidden_dim=cfg.hidden_dim,
                                                                                  n_layers=cfg.n_layers))
            else:
                self.field = MLPField(n_particles, spatial_dim, cfg.hidden_dim, cfg.n_layers, cfg.fourier_features)
        self.register_buffer("scale", torch.tensor(float("nan")))
        self.register_buffer("loc", torch.zeros(n_particles, spatial_dim))

    # ------------------------------------------------------------------ helpers
    def _param(self) -> torch.Tensor:
        return next(self.field.parameters())

    def _check_x(self, x: Any, name: str = "x") -> torch.Tensor:
        shape = f"(B, {self.n_particles}, {self.spatial_dim})"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape {shape}, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        if x.ndim != 3 or tuple(x.shape[1:]) != (self.n_particles, self.spatial_dim):
            raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
        p = self._param()
        return x.to(dtype=p.dtype, device=p.device)

    def _check_fitted(self) -> None:
        if not bool(torch.isfinite(self.scale)):
            raise RuntimeError("DensityModel is not fitted: call fit(x) first (or load a fitted payload)")

    def _prior_sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        p = self._param()
        dev = generator.device if generator is not None else p.device
        shape = (n, self.n_particles, self.spatial_dim)
        z = torch.randn(shape, generator=generator, device=dev, dtype=p.dtype).to(p.device)
        return remove_mean(z) if self.mean_free else z

    def _prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (z * z).flatten(1).sum(1) - 0.5 * self.dof * math.log(2 * math.pi)

    def _exact(self) -> bool:
        d = self.config.divergence
        return d == "exact" or (d == "auto" and self.n_particles * self.spatial_dim <= EXACT_DIVERGENCE_MAX_DIM)

    def _solve(self, z: torch.Tensor, t0: float, t1: float, create_graph: bool,
               generator: torch.Generator | None, param_grads: bool = True,
               on_time=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Integrate ``(z, a)`` from ``t0`` to ``t1``; returns ``z(t1)`` and ``a(t1) = int div v dt``.

        A batch whose solve fails (non-finite rows, or an assertion of the adaptive solver such as a
        step-size underflow) is split in halves until the failing rows are isolated; those get NaN.
        ``on_time``, if given, is called with the flow time of every field evaluation.
        """
        from torchdiffeq import odeint

        B = z.shape[0]
        probes = None
        if not self._exact():
            shape = (self.config.hutchinson_probes, *z.shape)
            dev = generator.device if generator is not None else z.device
            probes = (torch.randint(0, 2, shape, generator=generator, device=dev) * 2 - 1).to(z)  # (K, B, n, d)
            if self.mean_free:
                probes = probes - probes.mean(dim=2, keepdim=True)
        dyn = Dynamics(self.field, self.mean_free, probes, create_graph, param_grads)
        dyn.on_time = on_time
        ts = torch.tensor([t0, t1], dtype=z.dtype, device=z.device)
        cfg = self.config
        nan = torch.tensor(float("nan"), dtype=z.dtype, device=z.device)
        try:
            zs, a = odeint(dyn, (z, z.new_zeros(B)), ts, method=cfg.method, atol=cfg.atol, rtol=cfg.rtol,
                           options=dict(max_num_steps=_MAX_SOLVER_STEPS) if cfg.method in _ADAPTIVE else None)
            z1, a1 = zs[-1], a[-1]
            ok = torch.isfinite(a1) & torch.isfinite(z1.flatten(1)).all(1)  # (B,)
        except (AssertionError, RuntimeError):  # e.g. dt underflow, max_num_steps
            z1, a1 = torch.full_like(z, float("nan")), z.new_full((B,), float("nan"))
            ok = z.new_zeros(B, dtype=torch.bool)
        if B > 1 and not bool(ok.all()):
            # One bad row poisons the shared step size of the whole batch: re-solve the halves (the
            # generator, if any, draws fresh probes for each, still fixed per trajectory).
            h = B // 2
            (za, aa), (zb, ab) = (self._solve(z[:h], t0, t1, create_graph, generator, param_grads, on_time),
                                  self._solve(z[h:], t0, t1, create_graph, generator, param_grads, on_time))
            return torch.cat([za, zb]), torch.cat([aa, ab])
        return torch.where(ok[:, None, None], z1, nan), torch.where(ok, a1, nan)

    # ------------------------------------------------------------------ API
    def fit(self, x: torch.Tensor, *, steps: int | None = None, progress: bool = True,
            generator: torch.Generator | None = None) -> list[float]:
        """Fit the flow to samples by (OT) conditional flow matching; sets ``scale`` and ``loc``.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, n_particles, spatial_dim)`` finite samples, in the energy's length unit.
        steps : int, optional
            Optimiser steps (default ``config.steps``).
        progress : bool
            Show a tqdm progress bar.
        generator : torch.Generator, optional
            For minibatches, prior draws and times (default: seeded with ``config.seed``).

        Returns
        -------
        list of float
            Flow-matching loss (mean squared velocity error, scaled units) per step.
        """
        from tqdm.auto import tqdm

        x = self._check_x(x)
        steps = self.config.steps if steps is None else steps
        _check_int("steps", steps, 0)
        if x.shape[0] < 2 or not bool(torch.isfinite(x).all()):
            raise ValueError(f"x must hold at least 2 finite samples, got {x.shape[0]} (non-finite entries: "
                             f"{int((~torch.isfinite(x)).sum())})")
        gen = generator if generator is not None else torch.Generator().manual_seed(self.config.seed)
        x = x.detach()
        if self.mean_free:
            x = remove_mean(x)
            self.loc.zero_()
        else:
            self.loc.copy_(x.mean(0))
        xc = x - self.loc
        self.scale.copy_(torch.sqrt((xc * xc).sum() / (x.shape[0] * self.dof)).clamp_min(1e-12))
        data = xc / self.scale  # (N, n, d)
        cfg = self.config
        opt = torch.optim.Adam(self.field.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1), eta_min=0.01 * cfg.lr)
        losses: list[float] = []
        self.field.train()
        for _ in tqdm(range(steps), disable=not progress, desc="flow matching", unit="step"):
            idx = torch.randint(data.shape[0], (cfg.batch_size,), generator=gen, device=gen.device).to(data.device)
            z1 = data[idx]  # (b, n, d)
            z0 = self._prior_sample(cfg.batch_size, gen)  # (b, n, d)
            if cfg.ot_pairing:
                import ot

                cost = torch.cdist(z0.flatten(1).double(), z1.flatten(1).double()).pow(2).cpu().numpy()
                w = np.full(cfg.batch_size, 1.0 / cfg.batch_size)
                plan = ot.emd(w, w, cost)  # (b, b), a permutation / b
                z1 = z1[torch.as_tensor(plan.argmax(1), device=z1.device)]
            t = torch.rand(cfg.batch_size, generator=gen, device=gen.device).to(data)  # (b,)
            zt = (1 - t)[:, None, None] * z0 + t[:, None, None] * z1
            if cfg.sigma > 0:
                zt = zt + cfg.sigma * self._prior_sample(cfg.batch_size, gen)
            v = self.field(zt, t)
            if self.mean_free:
                v = remove_mean(v)
            loss = (v - (z1 - z0)).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.field.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        self.field.eval()
        return losses

    def sample_with_log_prob(self, n: int, *, batch_size: int = 1000, generator: torch.Generator | None = None,
                             progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` samples from ``q`` with their log densities, from one ODE solve each.

        Parameters
        ----------
        n : int
            Number of samples (>= 0).
        batch_size : int
            Samples per solve.
        generator : torch.Generator, optional
            For the prior draws (and Hutchinson probes).
        progress : bool
            Show a tqdm bar in samples, advanced by the flow time each batch's solve has reached
            (an LJ-13 batch of 1000 takes about an hour on one CPU thread, so a per-batch bar
            would stand still). The results do not depend on it.

        Returns
        -------
        x : torch.Tensor
            ``(n, n_particles, spatial_dim)`` in the energy's length unit (NaN rows: failed solves).
        log_q : torch.Tensor
            ``(n,)`` in nats per the energy's length unit to the power ``dof``; NaN for failed rows,
            which are kept so the caller can count them.
        """
        from tqdm.auto import tqdm

        _check_int("n", n, 0)
        _check_int("batch_size", batch_size, 1)
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be a bool, got {type(progress).__name__}")
        self._check_fitted()
        xs, lqs = [], []
        bar = tqdm(total=n, disable=not progress, desc=f"CNF proposals ({self.config.method})", unit="sample",
                   mininterval=1.0)
        with torch.no_grad(), bar:
            for start in range(0, n, batch_size):
                size = min(batch_size, n - start)
                reached = [0.0]  # flow time of this batch's solve, 0 -> 1

                def advance(t: float, start=start, size=size, reached=reached) -> None:
                    if t > reached[0]:
                        reached[0] = min(t, 1.0)
                        bar.update(start + int(size * reached[0]) - bar.n)

                z0 = self._prior_sample(size, generator)
                z1, a = self._solve(z0, 0.0, 1.0, False, generator, on_time=advance if progress else None)
                bar.update(start + size - bar.n)
                xs.append(z1 * self.scale + self.loc)
                lqs.append(self._prior_log_prob(z0) - a - self.dof * torch.log(self.scale))
        if not xs:
            p = self._param()
            return p.new_zeros(0, self.n_particles, self.spatial_dim), p.new_zeros(0)
        return torch.cat(xs), torch.cat(lqs)

    def log_prob(self, x: torch.Tensor, *, create_graph: bool = False) -> torch.Tensor:
        """Log density ``log q(x)``, by integrating the flow from the data (t = 1) to the prior (t = 0).

        Parameters
        ----------
        x : torch.Tensor
            ``(B, n_particles, spatial_dim)`` in the energy's length unit (centred internally for
            particle systems).
        create_graph : bool
            Keep the graph through the solver, so the result can be differentiated (wrt ``x`` and
            the parameters).

        Returns
        -------
        torch.Tensor
            ``(B,)`` in nats; NaN for non-finite inputs and failed solves.
        """
        if not isinstance(create_graph, bool):
            raise TypeError(f"create_graph must be a bool, got {type(create_graph).__name__}")
        return self._log_prob(x, create_graph, create_graph)

    def _log_prob(self, x: torch.Tensor, create_graph: bool, param_grads: bool) -> torch.Tensor:
        x = self._check_x(x)
        self._check_fitted()
        bad = ~torch.isfinite(x.detach()).flatten(1).all(1)  # (B,)
        x = torch.where(bad[:, None, None], torch.zeros_like(x), x)  # solved harmlessly, reported as NaN below
        if self.mean_free:
            x = remove_mean(x)
        with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
            z1 = (x - self.loc) / self.scale
            z0, a = self._solve(z1, 1.0, 0.0, create_graph, None, param_grads)
            # a = int_1^0 div v dt = -int_0^1 div v dt
            log_q = self._prior_log_prob(z0) + a - self.dof * torch.log(self.scale)
        return torch.where(bad, torch.full_like(log_q, float("nan")), log_q)

    def log_prob_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``log q(x)`` and its gradient wrt ``x``, by differentiating through the solver.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, n_particles, spatial_dim)`` in the energy's length unit.

        Returns
        -------
        log_q : torch.Tensor
            ``(B,)`` nats (detached); NaN for failed rows.
        grad : torch.Tensor
            ``(B, n_particles, spatial_dim)`` in nats per length unit (mean free for particle
            systems); NaN rows where ``log_q`` is NaN.
        """
        x = self._check_x(x).detach().requires_grad_(True)
        with torch.enable_grad():
            log_q = self._log_prob(x, True, False)  # gradient wrt x only
            ok = torch.isfinite(log_q)
            (grad,) = torch.autograd.grad(torch.where(ok, log_q, 0.0).sum(), x, allow_unused=True)
        grad = torch.zeros_like(x) if grad is None else grad
        if self.mean_free:
            grad = remove_mean(grad)
        grad = torch.where(ok[:, None, None], grad, torch.full_like(grad, float("nan")))
        return log_q.detach(), grad.detach()

    def to_payload(self) -> dict[str, Any]:
        """Plain data and CPU tensors describing the fitted model (safe for ``torch.load(weights_only=True)``)."""
        return {
            "kind": _PAYLOAD_KIND,
            "config": dataclasses.asdict(self.config),
            "n_particles": self.n_particles,
            "spatial_dim": self.spatial_dim,
            "mean_free": self.mean_free,
            "scale": float(self.scale),
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()},
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> "DensityModel":
        """Rebuild a model (float32, CPU: move it with ``.to``) from :meth:`to_payload`'s output."""
        if not isinstance(payload, Mapping):
            raise TypeError(f"payload must be a mapping from DensityModel.to_payload(), got {type(payload).__name__}")
        missing = [k for k in ("config", "n_particles", "spatial_dim", "mean_free", "state_dict") if k not in payload]
        if missing or payload.get("kind", _PAYLOAD_KIND) != _PAYLOAD_KIND:
            raise ValueError(f"payload is not a DensityModel payload (missing keys {missing}, "
                             f"kind {payload.get('kind')!r})")
        model = cls(int(payload["n_particles"]), int(payload["spatial_dim"]), bool(payload["mean_free"]),
                    DensityConfig(**dict(payload["config"])))
        model.load_state_dict(payload["state_dict"])
        return model

    def extra_repr(self) -> str:
        return (f"n_particles={self.n_particles}, spatial_dim={self.spatial_dim}, mean_free={self.mean_free}, "
                f"network={self.network_kind!r}, scale={float(self.scale):.4g}")

