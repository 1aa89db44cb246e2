"""The sampling side of a trained :class:`~idem_md.IDEMSampler`: reverse-SDE samples, the
probability-flow ODE's samples and log densities, and the CNF density model fitted on samples.

Each function takes the sampler; the :class:`~idem_md.IDEMSampler` methods of the same names
(``sample``, ``log_prob``, ``sample_with_log_prob``, ``fit_density``) call them and document them.
Positions come out in the energy's length unit (``coordinate_scale`` applied), on the CPU.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Iterable

import torch

from .dem.sde import degrees_of_freedom, integrate_reverse_sde, probability_flow_log_prob, remove_mean
from .nn.graphs import graphed_or_eager
from .preflight import BYTES_PER_FLOAT, MemoryEstimate, check_memory

if TYPE_CHECKING:
    from .dem.density import DensityModel
    from .io import Samples
    from .sampler import IDEMSampler

__all__ = ["generate", "sample", "to_samples", "log_prob", "sample_with_log_prob", "fit_density"]


def _counted(sizes: list[int], bar) -> Iterable[int]:
    """Yield each batch size, advancing ``bar`` by it when the caller asks for the next one; close it at the end."""
    for m in sizes:
        yield m
        bar.update(m)
    bar.close()


def _check_n(n) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")


def generate(sampler: "IDEMSampler", n: int, steps: int | None = None, progress: bool = False, *,
             method: str | None = None, time_grid: str | None = None) -> torch.Tensor:
    """``(n, n_particles, spatial_dim)`` reverse-SDE samples in working coordinates (no ``coordinate_scale``),
    on the sampler's device, in batches of ``config.sample_batch_size`` from the prior; the network call is
    replayed from CUDA graphs when ``config.cuda_graphs`` (:mod:`idem_md.nn.graphs`). ``steps``, ``method``,
    ``time_grid`` default to the training refill's ``config.sde_steps``, ``sde_method``, ``sde_time_grid``."""
    from tqdm.auto import tqdm

    cfg = sampler.config
    steps = cfg.sde_steps if steps is None else steps
    method = cfg.sde_method if method is None else method
    time_grid = cfg.sde_time_grid if time_grid is None else time_grid
    out = []
    sizes = [min(cfg.sample_batch_size, n - i) for i in range(0, n, cfg.sample_batch_size)]
    bar = tqdm(total=n, disable=not progress, desc=f"reverse SDE ({steps} steps)", unit="sample", mininterval=1.0)
    score_fn = graphed_or_eager(sampler.score, sampler.device, cfg.cuda_graphs)  # CUDA graphs: opt-in
    for m in _counted(sizes, bar):  # the bar advances by m once each batch is done
        x1 = sampler._prior(m)  # (m, n, d)
        out.append(integrate_reverse_sde(score_fn, x1, sampler.schedule, steps=steps,
                                         diffusion_scale=cfg.diffusion_scale, mean_free=sampler.mean_free,
                                         generator=sampler.generator, method=method,
                                         time_grid=time_grid, grid_rho=cfg.sde_grid_rho,
                                         exponential_sigma=cfg.sde_exponential_sigma,
                                         grid_sigma_lo=cfg.sde_grid_sigma_lo))
    if not out:
        return torch.zeros((0, *sampler.event_shape), device=sampler.device)
    return torch.cat(out)


def sample(sampler: "IDEMSampler", n: int, *, steps: int | None = None, compute_energies: bool = True,
           progress: bool = True, max_failed_fraction: float = 0.5, stacklevel: int = 2) -> "Samples":
    """:meth:`IDEMSampler.sample`: ``n`` reverse-SDE trajectories, the diverged ones dropped and counted.

    ``stacklevel`` is that of the warnings (2: the caller of this function).
    """
    _check_n(n)
    if not 0 <= max_failed_fraction <= 1:
        raise ValueError(f"max_failed_fraction must be in [0, 1], got {max_failed_fraction!r}")
    cfg = sampler.config
    method, time_grid, default_steps = cfg.sampling_integrator()
    steps = default_steps if steps is None else steps
    dim, m = sampler.energy.dim, min(n, cfg.sample_batch_size)
    check_memory(MemoryEstimate({"the samples (n)": 3 * n * dim * BYTES_PER_FLOAT,
                                 "reverse-SDE batch (sample_batch_size)": 3 * m * dim * BYTES_PER_FLOAT}),
                 f"sampling n={n} configurations of {sampler.energy.name}", device=sampler.device)
    if isinstance(steps, int) and steps < 20:
        warnings.warn(f"steps={steps} reverse-SDE steps is far too few for accurate samples (the paper uses "
                      "1000; fewer than ~100 leaves samples far from the target)", stacklevel=stacklevel)
    x = sampler._generate(n, steps, progress, method=method, time_grid=time_grid)  # (n, n_particles, d), working
    x = x * cfg.coordinate_scale  # the energy's units
    finite = torch.isfinite(x).flatten(1).all(1)  # (n,)
    n_bad = int((~finite).sum())
    if n_bad > max_failed_fraction * n or n_bad == n:
        raise FloatingPointError(
            f"{n_bad} of {n} reverse-SDE trajectories diverged (non-finite coordinates), more than "
            f"max_failed_fraction={max_failed_fraction}; train longer, or sample with more steps "
            f"(steps={steps} now)")
    if n_bad:
        warnings.warn(f"{n_bad} of {n} reverse-SDE trajectories diverged and were dropped; "
                      f"{n - n_bad} samples kept (more steps than {steps} or more training reduce this)",
                      stacklevel=stacklevel)
    samples = to_samples(sampler, x[finite], compute_energies, source="idem")
    samples.metadata["n_diverged"] = n_bad
    samples.metadata["integrator"] = {"method": method, "time_grid": time_grid, "steps": steps}
    return samples


def to_samples(sampler: "IDEMSampler", x: torch.Tensor, compute_energies: bool, source: str) -> "Samples":
    """``Samples`` on the CPU from positions ``x`` ``(B, n, d)`` in the energy's units.

    With ``compute_energies`` the energies of the finite rows are evaluated and counted under
    ``counters["evaluation"]`` (non-finite rows get NaN).
    """
    from .io import Samples

    x = x.detach().cpu()
    energy = sampler.energy
    energies = None
    if compute_energies:
        finite = torch.isfinite(x).flatten(1).all(1)  # (B,)
        energies = torch.full((len(x),), float("nan"))
        before = energy.n_evaluations
        if finite.any():
            energies[finite] = energy.energy(x[finite].to(sampler._energy_device())).detach().cpu().to(energies)
        sampler.counters["evaluation"] += energy.n_evaluations - before
    meta = {"system": energy.name, "kT": energy.kT, "source": source,
            "length_unit": energy.length_unit,  # trajectory files convert real units (idem_md.samples)
            "outer_iterations": sampler.outer_iteration, "energy_evaluations": dict(sampler.counters)}
    return Samples(x, energies, meta)


def _log_scale_jacobian(sampler: "IDEMSampler") -> float:
    """``dof * log(coordinate_scale)``: nats between working and energy coordinates."""
    e = sampler.energy
    return degrees_of_freedom(e.n_particles, e.spatial_dim, sampler.mean_free) * math.log(sampler.config.coordinate_scale)


def log_prob(sampler: "IDEMSampler", x: torch.Tensor, *, steps: int = 200, divergence: str = "auto") -> torch.Tensor:
    """:meth:`IDEMSampler.log_prob`: ``(B,)`` model log densities (nats) of ``x`` ``(B, n, d)`` in the energy's units."""
    x3 = sampler.energy._validate(x).to(sampler.device, torch.float32)  # (B, n, d)
    if sampler.mean_free:
        x3 = remove_mean(x3)
    y = x3 / sampler.config.coordinate_scale
    sampler.network.eval()
    logp = probability_flow_log_prob(sampler.network, y, sampler.schedule, steps=steps, mean_free=sampler.mean_free,
                                     divergence=divergence, generator=sampler.generator)
    return logp - _log_scale_jacobian(sampler)


def sample_with_log_prob(sampler: "IDEMSampler", n: int, *, steps: int = 200, divergence: str = "auto",
                         compute_energies: bool = True) -> "tuple[Samples, torch.Tensor]":
    """:meth:`IDEMSampler.sample_with_log_prob`: probability-flow ODE samples and their ``(n,)`` log densities."""
    from .dem import sample_probability_flow

    _check_n(n)
    sampler.network.eval()
    batch = sampler.config.sample_batch_size
    xs, lqs = [], []
    for i in range(0, n, batch):
        m = min(batch, n - i)
        x0, lq = sample_probability_flow(sampler.network, sampler._prior(m), sampler.schedule, steps=steps,
                                         mean_free=sampler.mean_free, divergence=divergence,
                                         generator=sampler.generator)  # (m, n, d), (m,)
        xs.append(x0)
        lqs.append(lq)
    log_q = torch.cat(lqs).detach().cpu() - _log_scale_jacobian(sampler)
    samples = to_samples(sampler, torch.cat(xs) * sampler.config.coordinate_scale, compute_energies,
                         source="idem-probability-flow")
    return samples, log_q


def fit_density(sampler: "IDEMSampler", n_samples: int = 5000, *, config=None, steps: int | None = None,
                progress: bool = True) -> "DensityModel":
    """:meth:`IDEMSampler.fit_density`: a CNF density model fitted on ``n_samples`` of the sampler's samples,
    kept in ``sampler.density``."""
    from .dem.density import DensityModel, default_density_config

    data = sampler.sample(n_samples, compute_energies=False, progress=progress).positions  # (N, n, d)
    config = default_density_config(sampler.mean_free) if config is None else config
    density = DensityModel(sampler.energy.n_particles, sampler.energy.spatial_dim, sampler.mean_free, config)
    density.fit(data.double(), steps=steps, progress=progress)
    sampler.density = density
    return density
