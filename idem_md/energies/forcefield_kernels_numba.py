"""The numba kernel behind :mod:`idem_md.energies.forcefield_kernels` (this module imports numba).

:mod:`idem_md.energies.forcefield_kernels` imports this module on the first kernel call, so
that ``import idem_md`` does not import numba. Every function here is compiled with
``cache=True`` (the JIT cost, a few seconds, is paid once per machine and stored in
``__pycache__``). The per-term loops and the small vector helpers are module-level functions
compiled with ``inline="always"``: numba inlines them into the kernel's IR before the parallel
(prange) transformation, so the compiled kernel is the one loop nest it was when written as a
single function, and calls to module-level dispatchers, unlike calls to jitted closures, keep
the kernel cachable. The helpers keep the order of every floating-point operation (fastmath
stays off), so the results are bitwise those of the single-function form.

Units are OpenMM's: nm, rad, kJ/mol; forces in kJ/mol/nm. Arithmetic is float64.
"""

from __future__ import annotations

import math

import numba

__all__ = ["forcefield_kernel"]

_INLINE = dict(cache=True, inline="always")
_SIN_GUARD = 1e-12  # angles at exactly 0 or pi have no defined gradient direction


# ------------------------------------------------------------------ helpers
@numba.njit(**_INLINE)
def _diff(x, j, i):  # pragma: no cover - compiled
    """``x[j] - x[i]`` as three scalars (nm)."""
    return x[j, 0] - x[i, 0], x[j, 1] - x[i, 1], x[j, 2] - x[i, 2]


@numba.njit(**_INLINE)
def _cross(ax, ay, az, bx, by, bz):  # pragma: no cover - compiled
    """The cross product ``a x b`` as three scalars."""
    return ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx


@numba.njit(**_INLINE)
def _add(f, i, fx, fy, fz):  # pragma: no cover - compiled
    """``f[i] += (fx, fy, fz)``."""
    f[i, 0] += fx
    f[i, 1] += fy
    f[i, 2] += fz


@numba.njit(**_INLINE)
def _sub(f, i, fx, fy, fz):  # pragma: no cover - compiled
    """``f[i] -= (fx, fy, fz)``."""
    f[i, 0] -= fx
    f[i, 1] -= fy
    f[i, 2] -= fz


# ------------------------------------------------------------------- terms
@numba.njit(**_INLINE)
def _bonds(x, bi, bp, f):  # pragma: no cover - compiled
    """``0.5 k (r - r0)^2`` over bonds ``bi (m, 2)``, ``bp (m, 2) = (r0, k)``; adds forces
    into ``f (n, 3)``; returns kJ/mol."""
    e = 0.0
    for k in range(bi.shape[0]):
        i, j = bi[k, 0], bi[k, 1]
        dx, dy, dz = _diff(x, j, i)
        r = math.sqrt(dx * dx + dy * dy + dz * dz)
        dr = r - bp[k, 0]
        e += 0.5 * bp[k, 1] * dr * dr
        g = bp[k, 1] * dr / r  # dE/dr / r
        _add(f, i, g * dx, g * dy, g * dz)
        _sub(f, j, g * dx, g * dy, g * dz)
    return e


@numba.njit(**_INLINE)
def _angles(x, ai, ap, f):  # pragma: no cover - compiled
    """``0.5 k (theta - theta0)^2`` over angles ``ai (m, 3)``, ``ap (m, 2) = (theta0, k)``;
    adds forces into ``f (n, 3)``; returns kJ/mol."""
    e = 0.0
    for k in range(ai.shape[0]):
        i, j, l = ai[k, 0], ai[k, 1], ai[k, 2]
        ux, uy, uz = _diff(x, i, j)
        vx, vy, vz = _diff(x, l, j)
        nu = math.sqrt(ux * ux + uy * uy + uz * uz)
        nv = math.sqrt(vx * vx + vy * vy + vz * vz)
        cx, cy, cz = _cross(ux, uy, uz, vx, vy, vz)
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
        _add(f, i, f0x, f0y, f0z)
        _add(f, l, f2x, f2y, f2z)
        _sub(f, j, f0x + f2x, f0y + f2y, f0z + f2z)
    return e


@numba.njit(**_INLINE)
def _torsions(x, ti, tp, f):  # pragma: no cover - compiled
    """``k (1 + cos(n phi - phase))`` over torsions ``ti (m, 4)``, ``tp (m, 3) = (n, phase, k)``;
    adds forces into ``f (n, 3)``; returns kJ/mol."""
    e = 0.0
    for k in range(ti.shape[0]):
        i0, i1, i2, i3 = ti[k, 0], ti[k, 1], ti[k, 2], ti[k, 3]
        b1x, b1y, b1z = _diff(x, i1, i0)
        b2x, b2y, b2z = _diff(x, i2, i1)
        b3x, b3y, b3z = _diff(x, i3, i2)
        n1x, n1y, n1z = _cross(b1x, b1y, b1z, b2x, b2y, b2z)
        n2x, n2y, n2z = _cross(b2x, b2y, b2z, b3x, b3y, b3z)
        nb2 = math.sqrt(b2x * b2x + b2y * b2y + b2z * b2z)
        mx, my, mz = _cross(n1x, n1y, n1z, n2x, n2y, n2z)
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
        _add(f, i0, f0x, f0y, f0z)
        _add(f, i3, f3x, f3y, f3z)
        _add(f, i1, f1x, f1y, f1z)
        _sub(f, i2, f0x + f3x + f1x, f0y + f3y + f1y, f0z + f3z + f1z)
    return e


@numba.njit(**_INLINE)
def _pairs(x, pi_, pp, coulomb, f):  # pragma: no cover - compiled
    """Coulomb ``coulomb qq / r`` + ``4 eps ((s/r)^12 - (s/r)^6)`` over interacting pairs
    ``pi_ (m, 2)``, ``pp (m, 3) = (qq, sigma, eps)``; adds forces into ``f (n, 3)``; returns kJ/mol."""
    e = 0.0
    for k in range(pi_.shape[0]):
        i, j = pi_[k, 0], pi_[k, 1]
        dx, dy, dz = _diff(x, j, i)
        r2 = dx * dx + dy * dy + dz * dz
        r = math.sqrt(r2)
        s2 = pp[k, 1] * pp[k, 1] / r2
        s6 = s2 * s2 * s2
        qq = coulomb * pp[k, 0] / r
        eps4 = 4.0 * pp[k, 2]
        e += qq + eps4 * (s6 * s6 - s6)
        g = (-qq - eps4 * (12.0 * s6 * s6 - 6.0 * s6)) / r2  # dE/dr / r
        _add(f, i, g * dx, g * dy, g * dz)
        _sub(f, j, g * dx, g * dy, g * dz)
    return e


# ------------------------------------------------------------------ kernel
@numba.njit(parallel=True, cache=True)
def forcefield_kernel(x, bi, bp, ai, ap, ti, tp, pi_, pp, coulomb, energy, forces):  # pragma: no cover - compiled
    """Energies into ``energy (B,)`` (kJ/mol) and forces into ``forces (B, n, 3)`` (kJ/mol/nm)
    of ``x (B, n, 3)`` (nm), in parallel over the batch; ``coulomb`` in kJ mol^-1 nm e^-2."""
    for b in numba.prange(x.shape[0]):
        xb, f = x[b], forces[b]
        f[:] = 0.0
        energy[b] = (_bonds(xb, bi, bp, f) + _angles(xb, ai, ap, f) + _torsions(xb, ti, tp, f)
                     + _pairs(xb, pi_, pp, coulomb, f))
