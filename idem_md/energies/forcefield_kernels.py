r"""Fused CPU kernel (numba) for :class:`~idem_md.energies.forcefield.ForceFieldEnergy`.

One pass per configuration over bonds, angles, torsions and nonbonded pairs, with analytic
forces, in parallel over the batch; float64 arithmetic. Units are OpenMM's (nm, rad, kJ/mol);
the caller converts to kT. The torch path in :mod:`idem_md.energies.forcefield` (autograd) is
the reference and both are checked against OpenMM in ``tests/test_forcefield.py``.

Gradients: bonds and pairs by the chain rule on ``r``; angles by
:math:`\partial\theta/\partial x_0 = -(\hat v - \cos\theta\,\hat u)/(|u|\sin\theta)`; torsions
by the Bekker / Blondel-Karplus form
:math:`\partial\varphi/\partial x_0 = -|b_2|\,n_1/|n_1|^2`,
:math:`\partial\varphi/\partial x_3 = |b_2|\,n_2/|n_2|^2`,
:math:`\partial\varphi/\partial x_1 = q\,\partial\varphi/\partial x_3 - (1 + p)\,\partial\varphi/\partial x_0`
(:math:`p = b_1 \cdot b_2/|b_2|^2`, :math:`q = b_3 \cdot b_2/|b_2|^2`) and :math:`x_2` by translation invariance.

The compiled loops are in :mod:`idem_md.energies.forcefield_kernels_numba`; this module holds
the numpy interface. numba is imported on first use, not when this module is imported, so that
``import idem_md`` stays fast; the kernel is compiled with ``cache=True`` (a few seconds, once
per machine).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["forcefield_energy_forces"]

_KERNEL: Callable[..., None] | None = None


def forcefield_energy_forces(x: np.ndarray, terms, coulomb: float) -> tuple[np.ndarray, np.ndarray]:
    """Energies ``(B,)`` in kJ/mol and forces ``(B, n, 3)`` in kJ/mol/nm of ``x`` (B, n, 3) nm, float64.

    Parameters
    ----------
    x : np.ndarray
        ``(B, n, 3)`` positions in nm (converted to C-contiguous float64).
    terms : ForceFieldTerms
        The System's parameters (:class:`~idem_md.energies.forcefield.ForceFieldTerms`).
    coulomb : float
        1/(4 pi eps0) in kJ mol^-1 nm e^-2.
    """
    global _KERNEL
    if _KERNEL is None:
        from .forcefield_kernels_numba import forcefield_kernel  # imports numba

        _KERNEL = forcefield_kernel
    x = np.ascontiguousarray(x, dtype=np.float64)
    energy = np.empty(x.shape[0])
    forces = np.empty(x.shape)
    _KERNEL(x, *terms.bonds, *terms.angles, *terms.torsions, *terms.pairs, float(coulomb), energy, forces)
    return energy, forces
