r"""Batched torch energies of standard OpenMM force fields (non-periodic Systems).

:class:`ForceFieldEnergy` reads the parameters of a non-periodic :class:`openmm.System`
once and evaluates its energy on a whole batch ``(B, n, 3)`` in torch, with forces by
autograd. It is the fast twin of :class:`~idem_md.energies.openmm_bridge.OpenMMEnergy`,
which makes one OpenMM Context call per configuration: the DEM estimator needs ``B * K``
energies and forces per step (``docs/energies.md`` has the measured speed-up).

Supported forces, in OpenMM's own conventions and units (nm, rad, kJ/mol, e):

* ``HarmonicBondForce``: :math:`\tfrac12 k (r - r_0)^2`;
* ``HarmonicAngleForce``: :math:`\tfrac12 k (\theta - \theta_0)^2`;
* ``PeriodicTorsionForce``: :math:`k (1 + \cos(n \varphi - \varphi_0))`, :math:`\varphi`
  the IUPAC dihedral (the sign OpenMM uses);
* ``NonbondedForce`` with ``NoCutoff``: Coulomb :math:`q_i q_j / (4 \pi \varepsilon_0 r)`
  plus Lennard-Jones :math:`4 \epsilon ((\sigma/r)^{12} - (\sigma/r)^6)` over all pairs,
  Lorentz-Berthelot combination, and every exception's own ``chargeProd``, ``sigma``,
  ``epsilon`` in place of the combined pair (zero ones are exclusions);
* ``CMMotionRemover``: no energy; ignored (it only acts inside an OpenMM integrator).

Anything else (other forces, constraints, virtual sites, periodic boxes, parameter offsets,
other nonbonded methods) is refused with one line naming it: these would change the
energy or the dynamics and silently dropping them is wrong.

Why not a kept library: torchmd (AMBER-style terms in torch) builds its parameters from a
moleculekit ``Molecule`` and a parmed / YAML force field, not from an OpenMM System, so its
terms would not be the user's System; openmm-torch goes the other way (a torch model inside
OpenMM). Translating the System's own parameters, checked against OpenMM to 1e-5, is the
short path (``docs/energies.md``).

This module imports OpenMM at import time; ``import idem_md`` does not import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..units import MOLAR_GAS_CONSTANT_KJ_PER_MOL_K, check_temperature
from .base import Energy

try:
    import openmm
except ImportError as exc:  # pragma: no cover - openmm is a declared dependency
    raise ImportError("idem_md.energies.forcefield requires OpenMM: pip install openmm") from exc

__all__ = ["ForceFieldEnergy", "ForceFieldTerms", "COULOMB_KJ_NM_PER_MOL_E2", "SUPPORTED_FORCES", "check_supported"]

#: 1 / (4 pi epsilon_0) in kJ mol^-1 nm e^-2: OpenMM's ONE_4PI_EPS0 (SimTKOpenMMRealType.h).
COULOMB_KJ_NM_PER_MOL_E2: float = 138.935456

#: Force classes this module translates; CMMotionRemover has no energy and is skipped.
SUPPORTED_FORCES: tuple[str, ...] = (
    "HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "NonbondedForce", "CMMotionRemover",
)


def check_supported(system: "openmm.System") -> None:
    """Raise ``ValueError`` (one line) unless every part of ``system`` can be translated.

    Parameters
    ----------
    system : openmm.System
        The System to check.
    """
    if not isinstance(system, openmm.System):
        raise TypeError(f"system must be an openmm.System, got {type(system).__name__}")
    problems = []
    others = sorted({type(f).__name__ for f in system.getForces()} - set(SUPPORTED_FORCES))
    if others:
        problems.append(f"unsupported forces {', '.join(others)} (supported: {', '.join(SUPPORTED_FORCES)})")
    if system.getNumConstraints():
        problems.append(f"{system.getNumConstraints()} constraints (build it with constraints=None)")
    n_virtual = sum(system.isVirtualSite(i) for i in range(system.getNumParticles()))
    if n_virtual:
        problems.append(f"{n_virtual} virtual sites")
    if system.usesPeriodicBoundaryConditions():
        problems.append("periodic boundary conditions (non-periodic Systems only)")
    for f in system.getForces():
        if isinstance(f, openmm.NonbondedForce):
            if f.getNonbondedMethod() != openmm.NonbondedForce.NoCutoff:
                problems.append(f"NonbondedForce method {f.getNonbondedMethod()} (NoCutoff only)")
            if f.getNumParticleParameterOffsets() or f.getNumExceptionParameterOffsets():
                problems.append("NonbondedForce parameter offsets")
    if problems:
        raise ValueError(f"ForceFieldEnergy cannot translate this System: {'; '.join(problems)}")


@dataclass(frozen=True)
class ForceFieldTerms:
    """The parameters of a System as arrays (OpenMM units: nm, rad, kJ/mol, e).

    Attributes
    ----------
    bonds : (np.ndarray, np.ndarray)
        ``(n_b, 2)`` atom indices; ``(n_b, 2)`` columns r0 (nm), k (kJ/mol/nm^2).
    angles : (np.ndarray, np.ndarray)
        ``(n_a, 3)``; ``(n_a, 2)`` columns theta0 (rad), k (kJ/mol/rad^2).
    torsions : (np.ndarray, np.ndarray)
        ``(n_t, 4)``; ``(n_t, 3)`` columns periodicity, phase (rad), k (kJ/mol).
    pairs : (np.ndarray, np.ndarray)
        ``(n_p, 2)`` interacting pairs (exclusions left out); ``(n_p, 3)`` columns
        charge product (e^2), sigma (nm), epsilon (kJ/mol).
    particles : np.ndarray
        ``(n, 3)`` per-particle charge (e), sigma (nm), epsilon (kJ/mol); zeros without
        a NonbondedForce.
    """

    bonds: tuple[np.ndarray, np.ndarray]
    angles: tuple[np.ndarray, np.ndarray]
    torsions: tuple[np.ndarray, np.ndarray]
    pairs: tuple[np.ndarray, np.ndarray]
    particles: np.ndarray

    @classmethod
    def from_system(cls, system: "openmm.System") -> "ForceFieldTerms":
        """Read the terms of a System that passes :func:`check_supported`."""
        check_supported(system)
        rows: dict[str, tuple[list, list]] = {k: ([], []) for k in ("bonds", "angles", "torsions")}
        pairs: tuple[list, list] = ([], [])
        particles = np.zeros((system.getNumParticles(), 3))
        for f in system.getForces():
            if isinstance(f, openmm.HarmonicBondForce):
                for k in range(f.getNumBonds()):
                    i, j, r0, kb = f.getBondParameters(k)
                    rows["bonds"][0].append((i, j))
                    rows["bonds"][1].append((_v(r0), _v(kb)))
            elif isinstance(f, openmm.HarmonicAngleForce):
                for k in range(f.getNumAngles()):
                    i, j, l, th0, ka = f.getAngleParameters(k)
                    rows["angles"][0].append((i, j, l))
                    rows["angles"][1].append((_v(th0), _v(ka)))
            elif isinstance(f, openmm.PeriodicTorsionForce):
                for k in range(f.getNumTorsions()):
                    i, j, l, m, per, phase, kt = f.getTorsionParameters(k)
                    rows["torsions"][0].append((i, j, l, m))
                    rows["torsions"][1].append((float(per), _v(phase), _v(kt)))
            elif isinstance(f, openmm.NonbondedForce):
                idx, par, particles = _nonbonded_pairs(f)
                pairs[0].extend(idx)
                pairs[1].extend(par)
        widths = {"bonds": (2, 2), "angles": (3, 2), "torsions": (4, 3)}
        arrays = {k: (np.asarray(v[0], dtype=np.int64).reshape(-1, widths[k][0]),
                      np.asarray(v[1], dtype=np.float64).reshape(-1, widths[k][1])) for k, v in rows.items()}
        return cls(pairs=(np.asarray(pairs[0], dtype=np.int64).reshape(-1, 2),
                          np.asarray(pairs[1], dtype=np.float64).reshape(-1, 3)), particles=particles, **arrays)


def _check_temperature(temperature: Any) -> float:
    """Kelvin as a float, from a number or an OpenMM Quantity in temperature units."""
    if isinstance(temperature, openmm.unit.Quantity):
        temperature = temperature.value_in_unit(openmm.unit.kelvin)
    return check_temperature(temperature)


def _v(quantity: Any) -> float:
    """A parameter's value in OpenMM's default units (nm, rad, kJ/mol, e)."""
    return float(quantity._value if hasattr(quantity, "_value") else quantity)


def _nonbonded_pairs(force: "openmm.NonbondedForce") -> tuple[list, list, np.ndarray]:
    """Every interacting pair of a NoCutoff NonbondedForce with its (charge product, sigma, epsilon),
    and the ``(n, 3)`` per-particle (charge, sigma, epsilon)."""
    n = force.getNumParticles()
    q, sig, eps = (np.empty(n) for _ in range(3))
    for i in range(n):
        qi, si, ei = force.getParticleParameters(i)
        q[i], sig[i], eps[i] = _v(qi), _v(si), _v(ei)
    exceptions = {}
    for k in range(force.getNumExceptions()):
        i, j, qq, s, e = force.getExceptionParameters(k)
        exceptions[(min(i, j), max(i, j))] = (_v(qq), _v(s), _v(e))
    ii, jj = np.triu_indices(n, k=1)
    idx, par = [], []
    for i, j in zip(ii.tolist(), jj.tolist()):
        p = exceptions.get((i, j))
        if p is None:
            p = (q[i] * q[j], 0.5 * (sig[i] + sig[j]), float(np.sqrt(eps[i] * eps[j])))
        if p[0] != 0.0 or p[2] != 0.0:  # both zero: an exclusion (or a pair with no interaction)
            idx.append((i, j))
            par.append(p)
    return idx, par, np.stack([q, sig, eps], axis=1)


class ForceFieldEnergy(Energy):
    """A non-periodic OpenMM System's standard forces as a batched torch energy in nm and kT.

    ``E = E_openmm / (R T)`` with ``R`` = :data:`~idem_md.units.MOLAR_GAS_CONSTANT_KJ_PER_MOL_K`,
    the same units as :class:`~idem_md.energies.openmm_bridge.OpenMMEnergy` (and the same
    :meth:`identity` keys, so each can stand in for the other's checkpoints only when
    ``name`` matches). Evaluated in float64 (returned in the input's dtype), forces by
    autograd; the parameters are buffers, so ``.to("cuda")`` moves the evaluation.

    Parameters
    ----------
    system : openmm.System
        Only the forces in :data:`SUPPORTED_FORCES`, no constraints, virtual sites or
        periodic box (:func:`check_supported` says what is refused, in one line).
    temperature : float or openmm.unit.Quantity
        Kelvin, > 0; sets the kT unit.
    name : str, optional
        Label; defaults to ``"forcefield<n_particles>"``.
    backend : str
        ``"auto"`` (the fused numba kernel of :mod:`idem_md.energies.forcefield_kernels`,
        analytic forces, for CPU batches that need no autograd, when numba imports; torch
        otherwise), ``"torch"`` (autograd, the reference) or ``"numba"``.

    Attributes
    ----------
    masses : torch.Tensor
        ``(n,)`` particle masses in amu (for a torch MD baseline).

    Examples
    --------
    >>> import openmm, torch
    >>> s = openmm.System(); _ = [s.addParticle(12.0) for _ in range(2)]
    >>> b = openmm.HarmonicBondForce(); _ = b.addBond(0, 1, 0.15, 1000.0); _ = s.addForce(b)
    >>> ff = ForceFieldEnergy(s, temperature=300.0)
    >>> x = torch.tensor([[[0.0, 0.0, 0.0], [0.25, 0.0, 0.0]]], dtype=torch.float64)
    >>> round(float(ff.energy(x)[0]) * ff.kT_kj_per_mol, 6)  # 0.5 * 1000 * 0.1^2 kJ/mol
    5.0
    """

    length_unit = "nm"
    energy_unit = "kT"
    #: No external field among the supported forces: E(x + c) = E(x).
    translation_invariant = True
    #: ``run_md`` runs the original System in OpenMM (real masses, time in ps).
    default_md_engine = "openmm"

    def __init__(self, system: "openmm.System", temperature: float, name: str | None = None,
                 backend: str = "auto", positions: Any = None):
        from .kernels import check_backend

        backend = check_backend(backend)
        terms = ForceFieldTerms.from_system(system)
        n = system.getNumParticles()
        temperature = _check_temperature(temperature)
        super().__init__(n, 3, kT=1.0, name=name or f"forcefield{n}")
        self.backend = backend
        self.temperature = temperature
        #: R T in kJ/mol: the energy unit of this target.
        self.kT_kj_per_mol = MOLAR_GAS_CONSTANT_KJ_PER_MOL_K * temperature
        self._force_names = [type(f).__name__ for f in system.getForces()]
        #: kJ/mol in one energy unit (kT), for the bridges' unit conversions.
        self.openmm_energy_unit_kj_per_mol = self.kT_kj_per_mol
        self._system_xml = openmm.XmlSerializer.serialize(system)
        self.terms = terms
        for key in ("bonds", "angles", "torsions", "pairs"):
            idx, par = getattr(terms, key)
            self.register_buffer(f"{key}_index", torch.as_tensor(idx), persistent=False)
            self.register_buffer(f"{key}_params", torch.as_tensor(par, dtype=torch.float64), persistent=False)
        self._positions_nm = None
        if positions is not None:  # the MD start (initial_configuration), e.g. a PDB's positions in nm
            if hasattr(positions, "value_in_unit"):
                import openmm.unit as u

                positions = positions.value_in_unit(u.nanometer)
            arr = np.asarray(positions, dtype=np.float64)
            if arr.shape != (n, 3) or not np.isfinite(arr).all():
                raise ValueError(f"positions must be finite with shape ({n}, 3) in nm, got {arr.shape}")
            self._positions_nm = arr
        masses = [_v(system.getParticleMass(i)) for i in range(n)]
        self.register_buffer("masses", torch.as_tensor(masses, dtype=torch.float64), persistent=False)

    def _identity_extra(self) -> dict[str, Any]:
        return dict(temperature=self.temperature, forces=list(self._force_names))

    def openmm_system(self) -> "openmm.System":
        """A fresh copy of the System this energy was translated from (kJ/mol, nm, amu)."""
        return openmm.XmlSerializer.deserialize(self._system_xml)

    def to_openmm_system(self) -> "openmm.System":
        """The System this energy was translated from (for OpenMM MD; energies there in kJ/mol,
        :attr:`openmm_energy_unit_kj_per_mol` = R T per kT)."""
        return self.openmm_system()

    def initial_configuration(self, seed: int = 0) -> torch.Tensor:
        """The MD start: the ``positions`` given at construction (nm, centred), else the base
        class's random placement (which a bonded molecule should not rely on)."""
        if self._positions_nm is None:
            return super().initial_configuration(seed)
        x = torch.as_tensor(self._positions_nm.copy())
        return x - x.mean(0)

    def particle_types(self) -> list[int]:
        """One integer type per particle: particles with the same mass and nonbonded
        parameters (charge, sigma, epsilon) share a type, numbered in order of first
        appearance. A hook for score networks that embed particle types.

        Returns
        -------
        list of int
            ``n_particles`` types in ``0 .. n_types - 1``.
        """
        nonbonded = self.terms.particles  # (n, 3)
        keys = [(round(float(self.masses[i]), 3),) + tuple(round(float(v), 6) for v in nonbonded[i])
                for i in range(self.n_particles)]
        seen: dict[tuple, int] = {}
        return [seen.setdefault(k, len(seen)) for k in keys]

    # ---------------------------------------------------------- evaluation
    def energy_kj_per_mol(self, x: torch.Tensor) -> torch.Tensor:
        """Energies of ``x`` (B, n, 3) in nm as kJ/mol, float64, differentiable: ``(B,)``."""
        x = x.to(torch.float64)
        e = _bond_energy(x, self.bonds_index, self.bonds_params)
        e = e + _angle_energy(x, self.angles_index, self.angles_params)
        e = e + _torsion_energy(x, self.torsions_index, self.torsions_params)
        return e + _pair_energy(x, self.pairs_index, self.pairs_params)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        from .kernels import use_numba

        if use_numba(self.backend, x):
            return self._energy_and_forces(x)[0]
        return (self.energy_kj_per_mol(x) / self.kT_kj_per_mol).to(x.dtype)

    def _energy_and_forces(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from .kernels import use_numba

        if use_numba(self.backend, x):
            from .forcefield_kernels import forcefield_energy_forces

            e, f = forcefield_energy_forces(x.detach().numpy(), self.terms, COULOMB_KJ_NM_PER_MOL_E2)
            scale = 1.0 / self.kT_kj_per_mol  # kJ/mol -> kT
            return torch.from_numpy(e * scale).to(x.dtype), torch.from_numpy(f * scale).to(x.dtype)
        with torch.enable_grad():
            xg = x.detach().to(torch.float64).requires_grad_(True)
            e = self.energy_kj_per_mol(xg) / self.kT_kj_per_mol  # (B,) kT
            (grad,) = torch.autograd.grad(e.sum(), xg)
        return e.detach().to(x.dtype), (-grad).to(x.dtype)  # (B,), (B, n, 3) kT/nm

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temperature={self.temperature} K, backend={self.backend!r}"


def _bond_energy(x: torch.Tensor, idx: torch.Tensor, par: torch.Tensor) -> torch.Tensor:
    if not len(idx):
        return x.new_zeros(x.shape[0])
    r = (x[:, idx[:, 1]] - x[:, idx[:, 0]]).norm(dim=-1)  # (B, n_b) nm
    return (0.5 * par[:, 1] * (r - par[:, 0]) ** 2).sum(-1)


def _angle_energy(x: torch.Tensor, idx: torch.Tensor, par: torch.Tensor) -> torch.Tensor:
    if not len(idx):
        return x.new_zeros(x.shape[0])
    u = x[:, idx[:, 0]] - x[:, idx[:, 1]]  # (B, n_a, 3)
    v = x[:, idx[:, 2]] - x[:, idx[:, 1]]
    theta = torch.atan2(torch.linalg.cross(u, v).norm(dim=-1), (u * v).sum(-1))  # (B, n_a) rad, in [0, pi]
    return (0.5 * par[:, 1] * (theta - par[:, 0]) ** 2).sum(-1)


def _torsion_energy(x: torch.Tensor, idx: torch.Tensor, par: torch.Tensor) -> torch.Tensor:
    if not len(idx):
        return x.new_zeros(x.shape[0])
    phi = dihedral(x, idx)  # (B, n_t) rad
    return (par[:, 2] * (1.0 + torch.cos(par[:, 0] * phi - par[:, 1]))).sum(-1)


def dihedral(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """IUPAC dihedral angles (rad, in (-pi, pi]) of ``x`` (B, n, 3) for index quadruples ``idx`` (m, 4): (B, m)."""
    b1 = x[:, idx[:, 1]] - x[:, idx[:, 0]]
    b2 = x[:, idx[:, 2]] - x[:, idx[:, 1]]
    b3 = x[:, idx[:, 3]] - x[:, idx[:, 2]]
    n1 = torch.linalg.cross(b1, b2)
    n2 = torch.linalg.cross(b2, b3)
    y = (torch.linalg.cross(n1, n2) * b2).sum(-1) / b2.norm(dim=-1)
    return torch.atan2(y, (n1 * n2).sum(-1))


def _pair_energy(x: torch.Tensor, idx: torch.Tensor, par: torch.Tensor) -> torch.Tensor:
    if not len(idx):
        return x.new_zeros(x.shape[0])
    r = (x[:, idx[:, 1]] - x[:, idx[:, 0]]).norm(dim=-1)  # (B, n_p) nm
    coulomb = COULOMB_KJ_NM_PER_MOL_E2 * par[:, 0] / r
    s6 = (par[:, 1] / r) ** 6
    return (coulomb + 4.0 * par[:, 2] * (s6 * s6 - s6)).sum(-1)
