"""Inputs of an evaluation: sample sets as :class:`~idem_md.io.Samples`, their energies, argument checks.

Energies come from :func:`idem_md.samples.compute_energies` (chunked, counted by the energy);
stored energies that disagree with the recomputed ones are noted in the report and warned about.
Units: lengths in the energy's length unit, energies in its energy unit.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from ..energies.base import Energy
from ..io import Samples
from ..samples.energies import compute_energies

__all__ = ["as_samples"]

#: Relative tolerance (floored at an absolute 1e-4) of stored against recomputed energies.
STORED_ENERGY_RTOL = 1e-4


def as_samples(obj: Any, energy: Energy, name: str = "samples") -> Samples:
    """``obj`` (Samples, MDRun, ``(N, n, d)``/``(N, dim)`` array or tensor) as non-empty Samples of ``energy``'s shape.

    Raises :class:`ValueError` naming ``name`` for empty sets or another
    particle count / spatial dimension than ``energy``'s.
    """
    n, d = energy.n_particles, energy.spatial_dim
    if isinstance(obj, Samples):
        s = obj
    elif hasattr(obj, "to_samples") and callable(obj.to_samples):  # MDRun, without importing openmm's module
        s = obj.to_samples()
    elif isinstance(obj, (torch.Tensor, np.ndarray, list, tuple)):
        arr = obj if isinstance(obj, torch.Tensor) else np.asarray(obj)
        if arr.ndim >= 1 and arr.shape[0] == 0:
            raise ValueError(f"{name} is empty (shape {tuple(arr.shape)}); need at least one configuration")
        try:
            s = Samples.from_array(arr, n, d)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} does not hold configurations of {energy.name} ({n} particles in {d}D): {err}") \
                from err
    else:
        raise TypeError(f"{name} must be Samples, an MDRun, or an (N, {n * d}) / (N, {n}, {d}) array or tensor, "
                        f"got {type(obj).__name__}")
    if len(s) == 0:
        raise ValueError(f"{name} is empty (0 configurations); need at least one")
    if (s.n_particles, s.spatial_dim) != (n, d):
        raise ValueError(f"{name} holds configurations of {s.n_particles} particles in {s.spatial_dim}D, "
                         f"but energy {energy.name!r} is for {n} particles in {d}D")
    return s


def resolve_energy(energy: Any) -> Energy:
    """``energy`` itself, or the registered system of that name."""
    if isinstance(energy, str):
        from ..energies.registry import get_energy

        return get_energy(energy)
    if not isinstance(energy, Energy):
        raise TypeError(f"energy must be an idem_md Energy or a registered system name, got {type(energy).__name__}")
    return energy


def check_sampler(sampler: Any, energy: Energy) -> None:
    """Raise unless ``sampler`` looks like an IDEMSampler built for ``energy``'s system."""
    for attr in ("log_prob", "sample", "sample_with_log_prob", "energy"):
        if not hasattr(sampler, attr):
            raise TypeError(f"sampler must be an IDEMSampler (with .{attr}), got {type(sampler).__name__}")
    mine, theirs = energy.identity(), sampler.energy.identity()
    if mine != theirs:
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise ValueError(f"sampler was built for another system than energy {energy.name!r} (differs in {diff})")


def check_positive_int(v: Any, name: str) -> None:
    """Raise a one-line ValueError naming ``name`` unless ``v`` is an int >= 1."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")


def note_system_mismatch(s: Samples, energy: Energy, name: str, notes: list[str]) -> None:
    """Note when the samples' metadata names another system than ``energy``."""
    system = s.metadata.get("system")
    if system is not None and str(system) != energy.name:
        notes.append(f"{name} metadata names system {system!r}, evaluated with energy {energy.name!r}")


def positions(s: Samples) -> np.ndarray:
    """``(N, n, d)`` float64 positions on the CPU."""
    return s.positions.detach().cpu().double().numpy()  # (N, n, d)


def checked_energies(s: Samples, energy: Energy, name: str, notes: list[str],
                     trust_stored: bool = False) -> np.ndarray:
    """``(N,)`` float64 energies, recomputed with ``energy`` unless ``trust_stored`` (then the ones held,
    if any). Stored energies that disagree with the recomputed ones are reported in ``notes`` and warned
    about; the recomputed ones are returned."""
    held = None if s.energies is None else s.energies.detach().cpu().double().numpy()
    if held is not None and trust_stored:
        return held
    e = compute_energies(s.positions, energy).detach().cpu().double().numpy()  # (N,)
    if held is None:
        notes.append(f"{name} carried no energies: computed with {energy.name} ({len(s)} evaluations)")
        return e
    both = np.isfinite(e) & np.isfinite(held)
    bad = ~both | (np.abs(e - held) > STORED_ENERGY_RTOL * np.maximum(1.0, np.abs(e)))
    if bad.any():
        msg = (f"{name}: {int(bad.sum())} of {len(s)} stored energies disagree with {energy.name}'s "
               f"(largest difference {float(np.nanmax(np.abs(e - held))):.3g}); the recomputed energies are used")
        notes.append(msg)
        warnings.warn(msg, stacklevel=3)
    return e


class EvaluationCounter:
    """Energy evaluations made between construction and :meth:`spent`, over the energy and the sampler's energy."""

    def __init__(self, energy: Energy, sampler: Any):
        self.energies = [energy]
        if sampler is not None and sampler.energy is not energy:
            self.energies.append(sampler.energy)
        self.start = [e.n_evaluations for e in self.energies]

    def spent(self) -> int:
        """Evaluations since construction."""
        return int(sum(e.n_evaluations - s for e, s in zip(self.energies, self.start)))
