"""Energy -> OpenMM System: an idem_md target with a pair form as an :class:`openmm.System`.

:func:`energy_to_openmm_system` (also ``energy.to_openmm_system()``) turns any target whose
:meth:`~idem_md.energies.base.Energy.openmm_pair_potential` gives a pair expression (LJ-n,
DW-n, a user's own pair potential) into a System with one OpenMM custom force; it never looks at
the class. Units: one reduced length is one nm, one reduced energy one kJ/mol (times the
energy's ``openmm_energy_unit_kj_per_mol``), every particle weighs :data:`PARTICLE_MASS_AMU`.
Re-exported by :mod:`idem_md.bridges.openmm`; imports OpenMM at import time.
"""

from __future__ import annotations

from ..energies.base import Energy
from ..energies.pair import PairPotential

try:
    import openmm
except ImportError as exc:  # pragma: no cover - openmm is a declared dependency
    raise ImportError("idem_md.bridges.openmm requires OpenMM: pip install openmm") from exc

__all__ = [
    "PARTICLE_MASS_AMU",
    "energy_to_openmm_system",
    "pair_potential_system",
    "lennard_jones_system",
    "double_well_system",
]

#: Mass of every particle in the Systems built here (amu); with nm and kJ/mol it
#: makes the reduced time unit 1 ps.
PARTICLE_MASS_AMU: float = 1.0


def energy_to_openmm_system(energy: Energy) -> "openmm.System":
    """OpenMM System with the same energy as an idem_md target (nm, kJ/mol, 1 amu).

    Parameters
    ----------
    energy : Energy
        Any target whose :meth:`~idem_md.energies.base.Energy.openmm_pair_potential`
        returns a :class:`~idem_md.energies.pair.PairPotential`.

    Returns
    -------
    openmm.System
        One particle per idem_md particle. Lengths are nm, energies kJ/mol times
        ``energy.openmm_energy_unit_kj_per_mol``. For 2D (or 1D) energies the System
        is still 3D: the force ignores z (and y), so those coordinates are free,
        decoupled degrees of freedom that feel zero force.

    Raises
    ------
    NotImplementedError
        When the energy has no pair form (for example GMM-40, which is not a particle system).
    """
    if not isinstance(energy, Energy):
        raise TypeError(f"energy must be an idem_md Energy, got {type(energy).__name__}")
    potential = energy.openmm_pair_potential()
    if potential is None:
        raise NotImplementedError(
            f"{type(energy).__name__} ({energy.name!r}) has no OpenMM form: override "
            "openmm_pair_potential() to return a PairPotential, or to_openmm_system() itself"
        )
    return pair_potential_system(potential, energy.n_particles, energy.spatial_dim,
                                 energy_scale=energy.openmm_energy_unit_kj_per_mol)


def pair_potential_system(potential: PairPotential, n_particles: int, spatial_dim: int = 3,
                          energy_scale: float = 1.0) -> "openmm.System":
    """OpenMM System summing one :class:`~idem_md.energies.pair.PairPotential` over all unordered pairs.

    Parameters
    ----------
    potential : PairPotential
        Expression of ``r2`` (nm^2) and its parameters.
    n_particles : int
        Particles (each :data:`PARTICLE_MASS_AMU`).
    spatial_dim : int
        Axes the pair distance uses (the others feel no force).
    energy_scale : float
        kJ/mol per unit of the expression's value.

    Returns
    -------
    openmm.System
    """
    if not isinstance(potential, PairPotential):
        raise TypeError(f"potential must be a PairPotential, got {type(potential).__name__}")
    main, *definitions = potential.expression.split(";")  # OpenMM: the energy first, then its definitions
    params = dict(potential.parameters)
    if energy_scale != 1.0:
        main = f"omm_escale*({main})"
        params["omm_escale"] = float(energy_scale)
    expression = ";".join([main, *definitions])
    force = _pair_force(expression, params, n_particles, spatial_dim)
    force.setName(potential.description)
    return _system_with(force, n_particles)


def lennard_jones_system(energy: Energy) -> "openmm.System":
    """OpenMM System of an LJ-n target (kept for old code: :func:`energy_to_openmm_system` does the same)."""
    return energy_to_openmm_system(energy)


def double_well_system(energy: Energy) -> "openmm.System":
    """OpenMM System of a DW-n target (kept for old code: :func:`energy_to_openmm_system` does the same)."""
    return energy_to_openmm_system(energy)


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
