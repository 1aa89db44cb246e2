"""Energies of sample sets: the one place that computes the energies samples do not carry.

Examples
--------
>>> import torch
>>> from idem_md import get_energy
>>> dw4 = get_energy("dw4")
>>> compute_energies(torch.zeros(3, 4, 2) + torch.arange(4.0)[None, :, None], dw4).shape
torch.Size([3])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..energies.base import Energy
    from .container import Samples

__all__ = ["ENERGY_CHUNK", "compute_energies", "energies_of"]

#: Configurations per energy call (bounds memory for LJ-55's pair tensors).
ENERGY_CHUNK: int = 4096


def _energy_device(energy: "Energy") -> torch.device:
    dev = getattr(energy, "device", None)  # a public hook when the energy has one
    if callable(dev):
        dev = dev()
    if dev is None and hasattr(energy, "_device"):
        dev = energy._device()
    return torch.device(dev) if dev is not None else torch.device("cpu")


def compute_energies(positions: torch.Tensor, energy: "Energy", chunk_size: int = ENERGY_CHUNK) -> torch.Tensor:
    """``(N,)`` energies of ``positions`` with ``energy.energy``, without grad, in chunks.

    Parameters
    ----------
    positions : torch.Tensor
        ``(N, n, d)`` or ``(N, dim)`` in the energy's length unit (:attr:`Energy.length_unit`).
    energy : Energy
        Evaluated on its own device (every call is counted by the energy).
    chunk_size : int
        Configurations per call.

    Returns
    -------
    torch.Tensor
        ``(N,)`` in the energy's unit (:attr:`Energy.energy_unit`), the energy's dtype, on the device
        of ``positions``; an empty tensor for ``N = 0`` (no call made).
    """
    if not isinstance(positions, torch.Tensor):
        positions = torch.as_tensor(positions)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if len(positions) == 0:
        return positions.new_zeros(0)
    dev = _energy_device(energy)
    with torch.no_grad():
        parts = [energy.energy(c.to(dev)).detach() for c in torch.split(positions, chunk_size)]
    return torch.cat(parts).to(positions.device)


def energies_of(samples: "Samples | Any", energy: "Energy | None", *, recompute: bool = False) -> torch.Tensor:
    """The energies ``samples`` carry, or (when they carry none, or ``recompute``) those of ``energy``.

    ``samples`` is anything with ``.positions`` and ``.energies`` (:class:`Samples`, ``MDRun``).
    Raises ``ValueError`` when energies are missing and ``energy`` is None.
    """
    held = getattr(samples, "energies", None)
    if held is not None and not recompute:
        return held
    if energy is None:
        raise ValueError("these samples carry no energies; pass energy= to compute them")
    return compute_energies(samples.positions, energy)
