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

numba is imported on first use; the kernel is compiled with ``cache=True`` (a few seconds,
once per machine).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["forcefield_energy_forces"]

_KERNEL: Callable[..., None] | None = None
_SIN_GUARD = 1e-12  # angles at exactly 0 or pi have no defined gradient direction


def _build() -> Callable[..., None]:
    import math

    import numba

    @numba.njit(cache=True, inline="always")
    def bonds(x, bi, bp, f):  # pragma: no cover - compiled
        """0.5 k (r - r0)^2 over bonds; adds forces into f (n, 3); returns kJ/mol."""
        e = 0.0
        for k in range(bi.shape[0]):
            i, j = bi[k, 0], bi[k, 1]
            dx = x[j, 0] - x[i, 0]
            dy = x[j, 1] - x[i, 1]
            dz = x[j, 2] - x[i, 2]
            r = math.sqrt(dx * dx + dy * dy + dz * dz)
            dr = r - bp[k, 0]
            e += 0.5 * bp[k, 1] * dr * dr
            g = bp[k, 1] * dr / r  # dE/dr / r
            f[i, 0] += g * dx
            f[i, 1] += g * dy
            f[i, 2] += g * dz
            f[j, 0] -= g * dx
            f[j, 1] -= g * dy
            f[j, 2] -= g * dz
        return e

    @numba.njit(cache=True, inline="always")
    def angles(x, ai, ap, f):  # pragma: no cover - compiled
        """0.5 k (theta - theta0)^2 over angles."""
        e = 0.0
        for k in range(ai.shape[0]):
            i, j, l = ai[k, 0], ai[k, 1], ai[k, 2]
            ux = x[i, 0] - x[j, 0]
            uy = x[i, 1] - x[j, 1]
            uz = x[i, 2] - x[j, 2]
            vx = x[l, 0] - x[j, 0]
            vy = x[l, 1] - x[j, 1]
            vz = x[l, 2] - x[j, 2]
            nu = math.sqrt(ux * ux + uy * uy + uz * uz)
            nv = math.sqrt(vx * vx + vy * vy + vz * vz)
            cx = uy * vz - uz * vy
            cy = uz * vx - ux * vz
            cz = ux * vy - uy * vx
            theta = math.atan2(math.sqrt(cx * cx + cy * cy + cz * cz), ux * vx + uy * vy + uz * vz)
            dth = theta - ap[k, 0]
            e += 0.5 * ap[k, 1] * dth * dth
            c = math.cos(theta)
            s = max(math.sin(theta), _SIN_GUARD)
            de = ap[k, 1] * dth  # dE/dtheta
            g0 = de / (nu * s)  # force on i = de * (v^ - c u^) / (|u| s)
            g2 = de / (nv * s)
            f0x = g0 * (vx / nv - c * ux / nu)
            f0y = g0 * (vy / nv - c * uy / nu)
            f0z = g0 * (vz / nv - c * uz / nu)
            f2x = g2 * (ux / nu - c * vx / nv)
            f2y = g2 * (uy / nu - c * vy / nv)
            f2z = g2 * (uz / nu - c * vz / nv)
            f[i, 0] += f0x
            f[i, 1] += f0y
            f[i, 2] += f0z
            f[l, 0] += f2x
            f[l, 1] += f2y
            f[l, 2] += f2z
            f[j, 0] -= f0x + f2x
            f[j, 1] -= f0y + f2y
            f[j, 2] -= f0z + f2z
        return e

    @numba.njit(cache=True, inline="always")
    def torsions(x, ti, tp, f):  # pragma: no cover - compiled
        """k (1 + cos(n phi - phase)) over torsions."""
        e = 0.0
        for k in range(ti.shape[0]):
            i0, i1, i2, i3 = ti[k, 0], ti[k, 1], ti[k, 2], ti[k, 3]
            b1x = x[i1, 0] - x[i0, 0]
            b1y = x[i1, 1] - x[i0, 1]
            b1z = x[i1, 2] - x[i0, 2]
            b2x = x[i2, 0] - x[i1, 0]
            b2y = x[i2, 1] - x[i1, 1]
            b2z = x[i2, 2] - x[i1, 2]
            b3x = x[i3, 0] - x[i2, 0]
            b3y = x[i3, 1] - x[i2, 1]
            b3z = x[i3, 2] - x[i2, 2]
            n1x = b1y * b2z - b1z * b2y
            n1y = b1z * b2x - b1x * b2z
            n1z = b1x * b2y - b1y * b2x
            n2x = b2y * b3z - b2z * b3y
            n2y = b2z * b3x - b2x * b3z
            n2z = b2x * b3y - b2y * b3x
            nb2 = math.sqrt(b2x * b2x + b2y * b2y + b2z * b2z)
            mx = n1y * n2z - n1z * n2y
            my = n1z * n2x - n1x * n2z
            mz = n1x * n2y - n1y * n2x
            phi = math.atan2((mx * b2x + my * b2y + mz * b2z) / nb2, n1x * n2x + n1y * n2y + n1z * n2z)
            per, phase, kt = tp[k, 0], tp[k, 1], tp[k, 2]
            e += kt * (1.0 + math.cos(per * phi - phase))
            de = -kt * per * math.sin(per * phi - phase)  # dE/dphi
            q1 = n1x * n1x + n1y * n1y + n1z * n1z
            q2 = n2x * n2x + n2y * n2y + n2z * n2z
            a0 = -de * (-nb2 / q1)  # force on i0 = -dE/dphi * dphi/dx0
            a3 = -de * (nb2 / q2)
            f0x, f0y, f0z = a0 * n1x, a0 * n1y, a0 * n1z
            f3x, f3y, f3z = a3 * n2x, a3 * n2y, a3 * n2z
            p = (b1x * b2x + b1y * b2y + b1z * b2z) / (nb2 * nb2)
            q = (b3x * b2x + b3y * b2y + b3z * b2z) / (nb2 * nb2)
            f1x = q * f3x - (1.0 + p) * f0x  # dphi/dx1 = q dphi/dx3 - (1 + p) dphi/dx0
            f1y = q * f3y - (1.0 + p) * f0y
            f1z = q * f3z - (1.0 + p) * f0z
            f[i0, 0] += f0x
            f[i0, 1] += f0y
            f[i0, 2] += f0z
            f[i3, 0] += f3x
            f[i3, 1] += f3y
            f[i3, 2] += f3z
            f[i1, 0] += f1x
            f[i1, 1] += f1y
            f[i1, 2] += f1z
            f[i2, 0] -= f0x + f3x + f1x
            f[i2, 1] -= f0y + f3y + f1y
            f[i2, 2] -= f0z + f3z + f1z
        return e

    @numba.njit(cache=True, inline="always")
    def pairs(x, pi_, pp, coulomb, f):  # pragma: no cover - compiled
        """Coulomb + 4 eps ((s/r)^12 - (s/r)^6) over interacting pairs."""
        e = 0.0
        for k in range(pi_.shape[0]):
            i, j = pi_[k, 0], pi_[k, 1]
            dx = x[j, 0] - x[i, 0]
            dy = x[j, 1] - x[i, 1]
            dz = x[j, 2] - x[i, 2]
            r2 = dx * dx + dy * dy + dz * dz
            r = math.sqrt(r2)
            s2 = pp[k, 1] * pp[k, 1] / r2
            s6 = s2 * s2 * s2
            qq = coulomb * pp[k, 0] / r
            eps4 = 4.0 * pp[k, 2]
            e += qq + eps4 * (s6 * s6 - s6)
            g = (-qq - eps4 * (12.0 * s6 * s6 - 6.0 * s6)) / r2  # dE/dr / r
            f[i, 0] += g * dx
            f[i, 1] += g * dy
            f[i, 2] += g * dz
            f[j, 0] -= g * dx
            f[j, 1] -= g * dy
            f[j, 2] -= g * dz
        return e

    @numba.njit(parallel=True, cache=True)
    def kernel(x, bi, bp, ai, ap, ti, tp, pi_, pp, coulomb, energy, forces):  # pragma: no cover - compiled
        for b in numba.prange(x.shape[0]):
            xb, f = x[b], forces[b]
            f[:] = 0.0
            energy[b] = (bonds(xb, bi, bp, f) + angles(xb, ai, ap, f) + torsions(xb, ti, tp, f)
                         + pairs(xb, pi_, pp, coulomb, f))

    return kernel


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
        _KERNEL = _build()
    x = np.ascontiguousarray(x, dtype=np.float64)
    energy = np.empty(x.shape[0])
    forces = np.empty(x.shape)
    _KERNEL(x, *terms.bonds, *terms.angles, *terms.torsions, *terms.pairs, float(coulomb), energy, forces)
    return energy, forces
