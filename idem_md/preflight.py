"""Checks made before work starts: is the target usable, and does a configuration fit in memory.

:class:`~idem_md.IDEMSampler` calls these at the start of ``fit`` and ``sample`` (and for the
replay buffer, at construction), so that a target returning NaN, or a ``batch_size`` that cannot
fit, stops at once with one line instead of training on garbage or failing deep inside the
allocator minutes later.

Memory figures are estimates in bytes: the network's activations are measured (the tensors
autograd saves for a forward pass of two configurations, counted once per storage, scaled to the
batch), the rest is counted from the tensor shapes (float32, 4 bytes per number). They are lower
bounds of the peak, so a configuration is refused only when it certainly cannot fit.

Examples
--------
>>> import torch
>>> from idem_md.energies import get_energy
>>> check_target(get_energy("dw4"), torch.randn(8, 4, 2) * 2)  # energy evaluations spent
8
>>> est = MemoryEstimate({"replay buffer (buffer_size)": 4 * 1000 * 8})
>>> est.total
32000
>>> check_memory(est, "training", available=10**9)  # fits: nothing happens
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .sampler import IDEMSampler

__all__ = ["TargetCheckError", "InsufficientMemoryError", "MemoryEstimate", "check_target", "available_memory",
           "activation_bytes_per_configuration", "check_memory", "BYTES_PER_FLOAT", "check_sampler_target",
           "check_training_memory", "dead_estimator_error"]

BYTES_PER_FLOAT = 4  # float32, the working precision of training and sampling
_GIB = 2**30


class TargetCheckError(ValueError):
    """The target gave no usable energies or forces on the first batch (its name is in the message)."""


class InsufficientMemoryError(MemoryError):
    """A configuration's estimated memory exceeds what this machine has available (one line, naming fields)."""


def check_target(energy, x: torch.Tensor, where: str = "the prior") -> int:
    """Evaluate ``energy`` on the configurations ``x`` ``(m, n, d)`` and refuse a target that cannot be trained on.

    Raises :class:`TargetCheckError` naming the target when no configuration has finite energy and
    forces, or when every energy is the same (a constant target has zero forces: nothing to learn).
    Some non-finite rows (e.g. LJ overlaps in a wide prior) are accepted: the estimator gives them
    zero weight. Returns the number of energy evaluations spent (``m``).
    """
    e, f = energy.energy_and_forces(x)  # (m,), (m, n, d)
    ok = torch.isfinite(e) & torch.isfinite(f).flatten(1).all(1)
    m, name = len(x), getattr(energy, "name", type(energy).__name__)
    if not bool(ok.any()):
        bad = "energies" if not bool(torch.isfinite(e).any()) else "forces"
        raise TargetCheckError(
            f"target {name!r} gave non-finite {bad} (NaN/inf) on all {m} configurations of a first batch drawn "
            f"from {where}; check the energy function or calculator (units, cell, parameters) before training")
    if m > 1 and bool((e[ok] == e[ok][0]).all()) and bool((f[ok] == 0).all()):
        raise TargetCheckError(
            f"target {name!r} gave the same energy ({float(e[ok][0]):.6g}) and zero forces on all {int(ok.sum())} "
            f"finite configurations of a first batch drawn from {where}: a constant target has nothing to learn; "
            "check that the energy depends on the positions (and on which positions: a cutoff?)")
    return m


def _proc_meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes this process can still allocate on ``device`` (None when unknown).

    CPU: the smaller of ``MemAvailable`` (``/proc/meminfo``) and the cgroup limit minus use.
    CUDA: the free memory reported by ``torch.cuda.mem_get_info``, plus memory that torch's caching
    allocator reserved but does not use. ``IDEM_MD_AVAILABLE_MEMORY``
    (bytes) overrides both, e.g. for tests.
    """
    override = os.environ.get("IDEM_MD_AVAILABLE_MEMORY")
    if override:
        return int(float(override))
    device = torch.device(device)
    if device.type == "cuda":
        try:  # free on the device, plus what torch's caching allocator holds but does not use
            held = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
            return int(torch.cuda.mem_get_info(device)[0] + held)
        except RuntimeError:
            return None
    found = [b for b in (_proc_meminfo_available(), _cgroup_available()) if b is not None]
    return min(found) if found else None


def activation_bytes_per_configuration(network: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> float:
    """Bytes that autograd saves per configuration in a forward pass of ``network`` on ``x`` ``(m, n, d)``, ``t`` ``(m,)``.

    Each storage is counted once. The network is run in eval mode (no batch-norm statistics
    change) and restored; no gradient is computed.
    """
    seen: dict[tuple, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        seen[(storage.data_ptr(), tensor.device)] = storage.nbytes()
        return tensor

    was_training = network.training
    network.eval()
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            network(x.detach().requires_grad_(False), t)
    finally:
        network.train(was_training)
    return sum(seen.values()) / max(len(x), 1)


@dataclass
class MemoryEstimate:
    """Estimated memory of a piece of work, in bytes, by part (each part names the fields that set it)."""

    parts: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Sum of the parts, in bytes."""
        return int(sum(self.parts.values()))

    def largest(self, k: int = 2) -> list[str]:
        """Names of the ``k`` largest parts, largest first."""
        return [name for name, _ in sorted(self.parts.items(), key=lambda kv: -kv[1])[:k]]


def check_memory(estimate: MemoryEstimate, what: str, available: int | None = None,
                 device: torch.device | str = "cpu") -> None:
    """Raise :class:`InsufficientMemoryError` (one line) when ``estimate`` exceeds the available memory.

    ``available`` defaults to :func:`available_memory` of ``device``; unknown availability passes.
    """
    if available is None:
        available = available_memory(device)
    if available is None or estimate.total <= available:
        return
    detail = ", ".join(f"{name} {_gib(b)}" for name, b in sorted(estimate.parts.items(), key=lambda kv: -kv[1])
                       if b >= 0.01 * estimate.total)
    raise InsufficientMemoryError(
        f"{what} needs at least {_gib(estimate.total)} of memory ({detail}) but {_gib(available)} is available on "
        f"{torch.device(device).type}; reduce {' or '.join(_fields(estimate.largest()))}")


def _fields(parts: list[str]) -> list[str]:
    """``"network activations (batch_size)"`` -> ``"batch_size"``."""
    out: list[str] = []
    for part in parts:
        inside = part[part.find("(") + 1:part.rfind(")")] if "(" in part else part
        out += [f for f in (s.strip() for s in inside.split(",")) if f and f not in out]
    return out


def _gib(nbytes: float) -> str:
    if nbytes >= 100 * _GIB:
        return f"{nbytes / _GIB:,.0f} GiB"
    if nbytes >= 0.1 * _GIB or nbytes == 0:
        return f"{nbytes / _GIB:.3g} GiB"
    return f"{nbytes / 2**20:.3g} MiB"


# ------------------------------------------------------------- the sampler's checks
def check_sampler_target(sampler: "IDEMSampler") -> None:
    """Refuse a sampler's target whose energies or forces are non-finite (or constant) on a first batch.

    The batch is ``min(batch_size, 16)`` rows of the replay buffer, else of the prior (drawn with a
    private generator, so the run's random stream is untouched), in the energy's coordinates. Under
    torch.distributed rank 0 evaluates and every rank stops with it (:class:`TargetCheckError`).
    Counted under ``sampler.counters["target_check"]``.
    """
    from .dem.sde import sample_prior

    cfg, dist, energy = sampler.config, sampler.dist, sampler.energy
    m = min(cfg.batch_size, 16)
    gen = torch.Generator(device=sampler.device).manual_seed(cfg.seed)
    if len(sampler.buffer):
        x, where = sampler.buffer.contents()[:m], "the replay buffer"  # (m, n, d)
    else:
        x = sample_prior(m, sampler.event_shape, sampler.schedule, sampler.mean_free, generator=gen,
                         device=sampler.device)  # (m, n, d)
        where = f"the prior (sigma_max={cfg.sigma_max:g}, coordinate_scale={cfg.coordinate_scale:g})"
    before, failure = energy.n_evaluations, None
    if dist.is_main:
        try:
            check_target(energy, (x * cfg.coordinate_scale).to(sampler._energy_device()), where)
        except Exception as exc:  # noqa: BLE001 - re-raised below, after every rank has heard of it
            failure = exc
    sampler.counters["target_check"] += int(dist.sum(energy.n_evaluations - before))
    if dist.any(failure is not None):
        raise failure or TargetCheckError(f"the target check of {energy.name!r} failed on rank 0 "
                                          "(its message says why)")


def _training_estimate(sampler: "IDEMSampler") -> MemoryEstimate:
    """Bytes of one rank's training step, by part (network activations measured on two configurations)."""
    from .dem.sde import sample_prior

    cfg, n, d, device = sampler.config, sampler.energy.n_particles, sampler.energy.spatial_dim, sampler.device
    B = sampler.dist.shard(cfg.batch_size)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    probe = sample_prior(2, sampler.event_shape, sampler.schedule, sampler.mean_free, generator=gen, device=device)
    act = activation_bytes_per_configuration(sampler.network, probe, torch.full((2,), 0.5, device=device))
    chunk = min(cfg.estimator_chunk_size, B * cfg.num_mc_samples)  # configurations per energy call
    n_params = sum(p.numel() for p in sampler.network.parameters())
    estimate = MemoryEstimate({
        "network activations (batch_size)": act * B,
        "estimator chunk (estimator_chunk_size, num_mc_samples)": chunk * 3 * n * d * BYTES_PER_FLOAT,
        "batch tensors (batch_size)": 8 * B * n * d * BYTES_PER_FLOAT,
        "reverse-SDE batch (sample_batch_size, samples_per_outer)":
            3 * min(cfg.sample_batch_size, cfg.samples_per_outer) * n * d * BYTES_PER_FLOAT,
        "network and optimiser (network_options)": 4 * n_params * BYTES_PER_FLOAT,
    })
    if device.type == "cpu":  # the processes of this node share its memory
        local = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if sampler.dist.enabled else 1
        estimate = MemoryEstimate({name: b * local for name, b in estimate.parts.items()})
    return estimate


def check_training_memory(sampler: "IDEMSampler") -> None:
    """Refuse (:class:`InsufficientMemoryError`, one line naming the fields) a sampler's training
    configuration that cannot fit in memory; under torch.distributed every rank stops together."""
    cfg, name = sampler.config, sampler.energy.name
    refused = None
    try:
        check_memory(_training_estimate(sampler), f"training {name} (batch_size={cfg.batch_size}, "
                     f"num_mc_samples={cfg.num_mc_samples})", device=sampler.device)
    except InsufficientMemoryError as exc:
        refused = exc
    if sampler.dist.any(refused is not None):  # every rank stops together (no rank left in a collective)
        raise refused or InsufficientMemoryError(f"training {name}: another rank ran out of memory "
                                                 "in the pre-flight estimate; reduce batch_size")


def dead_estimator_error(sampler: "IDEMSampler", steps: int, checkpoint_path=None) -> FloatingPointError:
    """The error that stops training after ``steps`` consecutive inner steps with estimator ESS 0."""
    kept = f"; the last good checkpoint at {checkpoint_path} is kept" if checkpoint_path else ""
    return FloatingPointError(
        f"the DEM estimator's ESS was 0 for {steps} consecutive inner steps (outer iteration {sampler.outer_iteration}, "
        f"inner step {sampler.inner_step}): target {sampler.energy.name!r} returned non-finite energies or forces for "
        f"every perturbation of every configuration, so nothing is being learned; the run stopped{kept}. Check "
        "the target around the buffer samples (or a smaller sigma_max / coordinate_scale)")
