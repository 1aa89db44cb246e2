"""OpenMM System -> Energy: :class:`OpenMMEnergy` wraps a System as an idem_md target (nm, kT).

The System must be non-periodic and unconstrained, without virtual sites or massless
particles (:func:`check_supported_system`); one :class:`openmm.Context` on the chosen
platform (:func:`available_platforms`) evaluates every configuration. Re-exported by
:mod:`idem_md.bridges.openmm`; imports OpenMM at import time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..energies.base import Energy, EnergyEvaluationError
from ..units import MOLAR_GAS_CONSTANT_KJ_PER_MOL_K, check_temperature

try:
    import openmm
    from openmm import unit as _u
except ImportError as exc:  # pragma: no cover - openmm is a declared dependency
    raise ImportError("idem_md.bridges.openmm requires OpenMM: pip install openmm") from exc

__all__ = [
    "TRANSLATION_INVARIANT_FORCES",
    "OpenMMEnergy",
    "check_supported_system",
    "available_platforms",
]

_PLATFORM_PREFERENCE = ("CPU", "Reference")


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


#: Forces whose energy depends on interparticle geometry only (a System made of these and
#: no others is translation invariant). CMMotionRemover contributes no energy.
TRANSLATION_INVARIANT_FORCES = frozenset({
    "HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "RBTorsionForce", "CMAPTorsionForce",
    "NonbondedForce", "CustomNonbondedForce", "CustomBondForce", "CustomAngleForce", "CustomTorsionForce",
    "GBSAOBCForce", "CustomGBForce", "CMMotionRemover",
})


def check_supported_system(system: "openmm.System") -> None:
    """Refuse, with one line naming what was found, what :class:`OpenMMEnergy` cannot sample correctly.

    Constraints (idem_md moves every coordinate freely, so a constrained bond would be
    sampled as free), periodic boxes (positions are not wrapped and the box is not
    sampled) and virtual sites (their positions are computed by OpenMM, not sampled)
    are refused, as are particles of zero mass (fixed in OpenMM MD, free in iDEM).

    Raises
    ------
    ValueError
        Naming the count and the first offending items.
    """
    n_c = system.getNumConstraints()
    if n_c:
        raise ValueError(
            f"system has {n_c} constraints (e.g. createSystem(constraints=HBonds)); OpenMMEnergy samples every "
            "coordinate freely and does not support them: rebuild the System with constraints=None"
        )
    if system.usesPeriodicBoundaryConditions():
        periodic = [f"{type(f).__name__}" for f in system.getForces() if f.usesPeriodicBoundaryConditions()]
        raise ValueError(
            f"system uses periodic boundary conditions ({', '.join(periodic)}); OpenMMEnergy supports "
            "non-periodic Systems only (nonbondedMethod=NoCutoff or CutoffNonPeriodic)"
        )
    n = system.getNumParticles()
    virtual = [i for i in range(n) if system.isVirtualSite(i)]
    if virtual:
        raise ValueError(f"system has {len(virtual)} virtual sites (particles {virtual[:5]}); OpenMMEnergy does "
                         "not support virtual sites: use a force field without them (e.g. TIP3P, not TIP4P)")
    massless = [i for i in range(n) if system.getParticleMass(i).value_in_unit(_u.dalton) == 0.0]
    if massless:
        raise ValueError(f"system has {len(massless)} particles of zero mass (particles {massless[:5]}), fixed in "
                         "OpenMM MD but free in iDEM; OpenMMEnergy does not support them: give them a mass")


def _positions_nm(positions: Any, n: int) -> np.ndarray:
    if isinstance(positions, _u.Quantity):
        positions = positions.value_in_unit(_u.nanometer)
    if isinstance(positions, torch.Tensor):
        positions = positions.detach().cpu().numpy()
    arr = np.asarray(positions, dtype=np.float64)
    if arr.shape not in ((n, 3), (3 * n,)) or not np.all(np.isfinite(arr)):
        raise ValueError(f"positions must be finite with shape ({n}, 3) in nm, got {arr.shape}")
    return arr.reshape(n, 3)


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
        A non-periodic System without constraints, virtual sites or massless particles
        (refused with a one-line ``ValueError``, see :func:`check_supported_system`).
        It is copied into the Context; later edits of ``system`` are not seen.
    temperature : float or openmm.unit.Quantity
        Temperature in kelvin (or a Quantity in temperature units), > 0; sets the kT unit.
    platform : str, optional
        OpenMM platform name; None picks ``"CPU"`` if available, else ``"Reference"``.
        ``"Reference"`` computes in double precision, ``"CPU"`` in mixed precision.
    name : str, optional
        Label; defaults to ``"openmm<n_particles>"``.
    positions : array_like, optional
        ``(n_particles, 3)`` nm (or an OpenMM Quantity): the starting configuration of MD
        (:meth:`initial_configuration`), for example ``PDBFile(...).positions``.
    translation_invariant : bool, optional
        None (default): True when every force is in :data:`TRANSLATION_INVARIANT_FORCES`
        and there is more than one particle.

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
    default_md_engine = "openmm"

    def __init__(self, system: "openmm.System", temperature: float, platform: str | None = None,
                 name: str | None = None, positions: Any = None, translation_invariant: bool | None = None):
        if not isinstance(system, openmm.System):
            raise TypeError(f"system must be an openmm.System, got {type(system).__name__}")
        n = system.getNumParticles()
        if n < 1:
            raise ValueError("system must contain at least one particle, got 0")
        check_supported_system(system)
        temperature = _check_temperature(temperature)
        self._platform = _resolve_platform(platform)
        super().__init__(n, 3, kT=1.0, name=name or f"openmm{n}")
        self.temperature = temperature
        #: R T in kJ/mol: the energy unit of this target.
        self.kT_kj_per_mol = MOLAR_GAS_CONSTANT_KJ_PER_MOL_K * temperature
        self.openmm_energy_unit_kj_per_mol = self.kT_kj_per_mol
        self._system_xml = openmm.XmlSerializer.serialize(system)
        self._force_names = [type(f).__name__ for f in system.getForces()]
        self._context: "openmm.Context | None" = None
        if translation_invariant is None:
            translation_invariant = n > 1 and set(self._force_names) <= TRANSLATION_INVARIANT_FORCES
        self.translation_invariant = bool(translation_invariant)
        self._positions = None if positions is None else _positions_nm(positions, n)

    def initial_configuration(self, seed: int = 0) -> torch.Tensor:
        """The ``positions`` given to the constructor, ``(n, 3)`` float64 nm (``seed`` is unused).

        Raises
        ------
        ValueError
            When none were given: a molecule needs its own starting geometry.
        """
        if self._positions is None:
            raise ValueError(f"{self.name} has no starting configuration: pass positions= to OpenMMEnergy "
                             "(e.g. PDBFile(...).positions) or initial_positions= to run_md")
        return torch.as_tensor(self._positions.copy(), dtype=torch.float64)

    def to_openmm_system(self) -> "openmm.System":
        """A fresh copy of the wrapped System (nm, kJ/mol, the System's own masses)."""
        return openmm.XmlSerializer.deserialize(self._system_xml)

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
