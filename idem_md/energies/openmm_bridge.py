"""Bridges between idem_md energies and OpenMM.

Out of idem_md, :func:`energy_to_openmm_system` (also ``energy.to_openmm_system()``)
turns an LJ-n or DW-n target into an :class:`openmm.System` made of OpenMM custom
forces. Into idem_md, :class:`OpenMMEnergy` wraps any :class:`openmm.System` as an
:class:`~idem_md.energies.base.Energy` in nm and kT units.

Unit mapping out of idem_md (see ``docs/energies.md``): one reduced length is one
nm, one reduced energy is one kJ/mol and every particle weighs 1 amu, so the
reduced time unit is sqrt(amu nm^2 / (kJ/mol)) = 1 ps. The thermostat temperature
at which ``k_B T`` equals a reduced ``kT`` is
:func:`idem_md.units.temperature_for_reduced_kT`.

This module imports OpenMM at import time; ``import idem_md`` does not import it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..units import MOLAR_GAS_CONSTANT_KJ_PER_MOL_K, check_temperature
from .base import Energy, EnergyEvaluationError
from .double_well import MultiDoubleWell
from .lennard_jones import LennardJonesCluster

try:
    import openmm
    from openmm import unit as _u
except ImportError as exc:  # pragma: no cover - openmm is a declared dependency
    raise ImportError("idem_md.energies.openmm_bridge requires OpenMM: pip install openmm") from exc

__all__ = [
    "PARTICLE_MASS_AMU",
    "OpenMMEnergy",
    "energy_to_openmm_system",
    "lennard_jones_system",
    "double_well_system",
    "available_platforms",
]

#: Mass of every particle in the Systems built here (amu); with nm and kJ/mol it
#: makes the reduced time unit 1 ps.
PARTICLE_MASS_AMU: float = 1.0

_PLATFORM_PREFERENCE = ("CPU", "Reference")


# --------------------------------------------------------------------- out
def energy_to_openmm_system(energy: Energy) -> "openmm.System":
    """OpenMM System with the same energy as an idem_md target (nm, kJ/mol, 1 amu).

    Parameters
    ----------
    energy : Energy
        A :class:`LennardJonesCluster` or a :class:`MultiDoubleWell`.

    Returns
    -------
    openmm.System
        One particle per idem_md particle. Reduced coordinates are nm, reduced
        energies kJ/mol. For 2D (or 1D) energies the System is still 3D: the
        force ignores z (and y), so those coordinates are free, decoupled degrees
        of freedom that feel zero force.

    Raises
    ------
    NotImplementedError
        For any other energy (for example GMM-40, which is not a particle system).
    """
    if isinstance(energy, LennardJonesCluster):
        return lennard_jones_system(energy)
    if isinstance(energy, MultiDoubleWell):
        return double_well_system(energy)
    raise NotImplementedError(
        f"to_openmm_system supports LennardJonesCluster (LJ-n) and MultiDoubleWell (DW-n), "
        f"not {type(energy).__name__} ({energy.name!r})"
    )


def lennard_jones_system(energy: LennardJonesCluster) -> "openmm.System":
    r"""OpenMM System for LJ-n, pair term and centring oscillator in one pair force.

    The oscillator :math:`c \sum_i |x_i - \bar x|^2` equals
    :math:`(c/n) \sum_{i<j} |x_i - x_j|^2`, so every term is a function of one pair
    distance: per unordered pair the force evaluates
    ``f eps (q^6 - 2 q^3) + (c/n) r^2`` with ``q = r_m^2 / (r^2 + s)``.

    Parameters
    ----------
    energy : LennardJonesCluster
        Its epsilon is read as kJ/mol, r_m as nm, softening as nm^2.

    Returns
    -------
    openmm.System
    """
    if not isinstance(energy, LennardJonesCluster):
        raise TypeError(f"energy must be a LennardJonesCluster, got {type(energy).__name__}")
    expression = "lj_fe*(q^6 - 2*q^3) + osc_k*r2; q = lj_rm2/(r2 + lj_soft)"
    params = {
        "lj_fe": energy.pair_factor * energy.epsilon,  # kJ/mol
        "lj_rm2": energy.r_m * energy.r_m,  # nm^2
        "lj_soft": energy.softening,  # nm^2
        "osc_k": energy.oscillator_scale / energy.n_particles,  # kJ/mol/nm^2 per pair
    }
    force = _pair_force(expression, params, energy.n_particles, energy.spatial_dim)
    force.setName(f"idem_md {energy.name}: LJ pairs + centring oscillator")
    return _system_with(force, energy.n_particles)


def double_well_system(energy: MultiDoubleWell) -> "openmm.System":
    r"""OpenMM System for DW-n: ``a (d - d0)^4 + b (d - d0)^2`` per unordered pair.

    For the 2D benchmark DW-4 the distance uses x and y only; z feels no force.

    Parameters
    ----------
    energy : MultiDoubleWell
        a, b read as kJ/mol/nm^4 and kJ/mol/nm^2, d0 as nm.

    Returns
    -------
    openmm.System
    """
    if not isinstance(energy, MultiDoubleWell):
        raise TypeError(f"energy must be a MultiDoubleWell, got {type(energy).__name__}")
    expression = "dw_a*u^4 + dw_b*u^2; u = sqrt(r2) - dw_d0"
    params = {"dw_a": energy.a, "dw_b": energy.b, "dw_d0": energy.d0}
    force = _pair_force(expression, params, energy.n_particles, energy.spatial_dim)
    force.setName(f"idem_md {energy.name}: pairwise double well")
    return _system_with(force, energy.n_particles)


def _pair_force(expression: str, params: dict[str, float], n: int, spatial_dim: int) -> "openmm.Force":
    """One force summing ``expression`` (a function of the squared distance ``r2``)
    over all unordered pairs, with distances over the first ``spatial_dim`` axes."""
    if spatial_dim == 3:
        # A CustomBondForce over all n(n-1)/2 pairs: measured faster than a
        # CustomNonbondedForce (NoCutoff) for LJ-13 and, unlike it, computed in
        # double precision on the CPU platform too (docs/energies.md).
        force = openmm.CustomBondForce(f"{expression}; r2 = r^2")
        for i in range(n):
            for j in range(i + 1, n):
                force.addBond(i, j, [])
    else:
        axes = "xyz"[:spatial_dim]
        r2 = " + ".join(f"({c}1-{c}2)^2" for c in axes)
        force = openmm.CustomCompoundBondForce(2, f"{expression}; r2 = {r2}")
        for i in range(n):
            for j in range(i + 1, n):
                force.addBond([i, j], [])
    for key, value in params.items():
        force.addGlobalParameter(key, float(value))
    return force


def _system_with(force: "openmm.Force", n: int) -> "openmm.System":
    system = openmm.System()
    for _ in range(n):
        system.addParticle(PARTICLE_MASS_AMU)
    system.addForce(force)
    return system


# ---------------------------------------------------------------------- in
def available_platforms() -> list[str]:
    """Names of the OpenMM platforms available in this installation."""
    return [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]


def _resolve_platform(platform: str | None) -> "openmm.Platform":
    names = available_platforms()
    if platform is None:
        name = next((p for p in _PLATFORM_PREFERENCE if p in names), names[0])
    elif isinstance(platform, str):
        if platform not in names:
            raise ValueError(f"platform must be one of the available OpenMM platforms {names}, got {platform!r}")
        name = platform
    else:
        raise TypeError(f"platform must be None or a platform name (one of {names}), got {type(platform).__name__}")
    return openmm.Platform.getPlatformByName(name)


_KJ_PER_MOL = _u.kilojoule_per_mole
_KJ_PER_MOL_NM = _u.kilojoule_per_mole / _u.nanometer


def _in_unit(quantity: "_u.Quantity", unit: "_u.Unit") -> Any:
    """Value of an OpenMM Quantity in ``unit``. States already hold kJ/mol and nm, and
    the generic ``value_in_unit`` (about 10 us per call) costs more than evaluating
    LJ-13 itself, so it is skipped when the units already match."""
    return quantity._value if quantity.unit == unit else quantity.value_in_unit(unit)


def _check_temperature(temperature: Any) -> float:
    if isinstance(temperature, _u.Quantity):  # e.g. 300 * unit.kelvin
        temperature = temperature.value_in_unit(_u.kelvin)
    return check_temperature(temperature)


class OpenMMEnergy(Energy):
    """An OpenMM System as an idem_md target: coordinates in nm, energies in kT.

    ``E = E_openmm / (R T)`` with ``R`` = :data:`~idem_md.units.MOLAR_GAS_CONSTANT_KJ_PER_MOL_K`,
    forces likewise in kT/nm, so :attr:`kT` is 1 and ``log_prob = -E``.

    One :class:`openmm.Context` is built lazily and reused for every configuration
    (``setPositions`` then one ``getState``). A System of B non-interacting
    replicas is not used: OpenMM reports only the total energy of a Context
    (force groups stop at 32), replicating an arbitrary System's forces generically
    is awkward, and every new batch size would need a new Context; timings are in
    ``docs/energies.md``.

    Parameters
    ----------
    system : openmm.System
        Any System without periodic box vectors in use (positions are set as given).
        It is copied into the Context; later edits of ``system`` are not seen.
    temperature : float or openmm.unit.Quantity
        Temperature in kelvin (or a Quantity in temperature units), > 0; sets the kT unit.
    platform : str, optional
        OpenMM platform name; None picks ``"CPU"`` if available, else ``"Reference"``.
        ``"Reference"`` computes in double precision, ``"CPU"`` in mixed precision.
    name : str, optional
        Label; defaults to ``"openmm<n_particles>"``.

    Notes
    -----
    The returned energies are detached: differentiate with the forces from
    :meth:`energy_and_forces`, not with autograd. :meth:`energy` also computes
    forces (OpenMM evaluates both in one pass).

    Examples
    --------
    >>> import torch
    >>> from idem_md import get_energy
    >>> omm = OpenMMEnergy(get_energy("lj13").to_openmm_system(), temperature=120.0, platform="Reference")
    >>> omm.energy(0.3 * torch.randn(2, 13, 3, dtype=torch.float64)).shape
    torch.Size([2])
    """

    length_unit = "nm"
    energy_unit = "kT"

    def __init__(self, system: "openmm.System", temperature: float, platform: str | None = None,
                 name: str | None = None):
        if not isinstance(system, openmm.System):
            raise TypeError(f"system must be an openmm.System, got {type(system).__name__}")
        n = system.getNumParticles()
        if n < 1:
            raise ValueError("system must contain at least one particle, got 0")
        temperature = _check_temperature(temperature)
        self._platform = _resolve_platform(platform)
        super().__init__(n, 3, kT=1.0, name=name or f"openmm{n}")
        self.temperature = temperature
        #: R T in kJ/mol: the energy unit of this target.
        self.kT_kj_per_mol = MOLAR_GAS_CONSTANT_KJ_PER_MOL_K * temperature
        self._system_xml = openmm.XmlSerializer.serialize(system)
        self._force_names = [type(f).__name__ for f in system.getForces()]
        self._context: "openmm.Context | None" = None

    @property
    def platform_name(self) -> str:
        """Name of the OpenMM platform that evaluates the energy."""
        return self._platform.getName()

    def _identity_extra(self) -> dict[str, Any]:
        return dict(temperature=self.temperature, platform=self.platform_name, forces=list(self._force_names))

    # ---------------------------------------------------------- evaluation
    def _get_context(self) -> "openmm.Context":
        if self._context is None:
            system = openmm.XmlSerializer.deserialize(self._system_xml)
            # The integrator is never stepped; a Context merely requires one.
            self._integrator = openmm.VerletIntegrator(1e-3)
            self._context = openmm.Context(system, self._integrator, self._platform)
        return self._context

    def _evaluate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        context = self._get_context()
        pos = x.detach().to("cpu", torch.float64).numpy()  # (B, n, 3) nm
        energies = np.empty(pos.shape[0])
        forces = np.empty(pos.shape)
        for b in range(pos.shape[0]):
            try:
                context.setPositions(pos[b])
                state = context.getState(getEnergy=True, getForces=True)
            except Exception as exc:
                raise EnergyEvaluationError(
                    f"OpenMM failed on configuration {b} of the batch ({self.name}): {exc}"
                ) from exc
            energies[b] = _in_unit(state.getPotentialEnergy(), _KJ_PER_MOL)
            forces[b] = _in_unit(state.getForces(asNumpy=True), _KJ_PER_MOL_NM)
        scale = 1.0 / self.kT_kj_per_mol  # kJ/mol -> kT
        e = torch.as_tensor(energies * scale, dtype=x.dtype, device=x.device)
        f = torch.as_tensor(forces * scale, dtype=x.dtype, device=x.device)
        return e, f

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return self._evaluate(x)[0]

    def _energy_and_forces(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._evaluate(x)

    # --------------------------------------------- copying and pickling
    def __getstate__(self) -> dict[str, Any]:
        # Contexts and Platforms cannot be pickled; the System travels as XML.
        state = self.__dict__.copy()
        state["_context"] = None
        state.pop("_integrator", None)
        state["_platform"] = self._platform.getName()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["_platform"] = openmm.Platform.getPlatformByName(state["_platform"])
        self.__dict__.update(state)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temperature={self.temperature} K, platform={self.platform_name!r}"
