"""Bridges between idem_md energies and OpenMM.

Out of idem_md, :func:`energy_to_openmm_system` (also ``energy.to_openmm_system()``)
turns any target whose :meth:`~idem_md.energies.base.Energy.openmm_pair_potential`
gives a pair expression (LJ-n, DW-n, a user's own pair potential) into an
:class:`openmm.System` with one OpenMM custom force; it never looks at the class.
Into idem_md, :class:`OpenMMEnergy` wraps a non-periodic, unconstrained
:class:`openmm.System` as an :class:`~idem_md.energies.base.Energy` in nm and kT units.

Unit mapping out of idem_md (see ``docs/energies.md``): one reduced length is one
nm, one reduced energy is one kJ/mol (times the energy's
``openmm_energy_unit_kj_per_mol``) and every particle weighs 1 amu, so the
reduced time unit is sqrt(amu nm^2 / (kJ/mol)) = 1 ps. The thermostat temperature
at which ``k_B T`` equals a reduced ``kT`` is
:func:`idem_md.units.temperature_for_reduced_kT`.

The two directions live in :mod:`idem_md.bridges.openmm_export` (Energy -> System) and
:mod:`idem_md.bridges.openmm_energy` (System -> Energy); this module re-exports both. It
imports OpenMM at import time; ``import idem_md`` does not import it.
"""

from __future__ import annotations

from .openmm_energy import (
    TRANSLATION_INVARIANT_FORCES,
    OpenMMEnergy,
    _in_unit,  # noqa: F401  (used by old code through idem_md.energies.openmm_bridge)
    _resolve_platform,  # noqa: F401
    available_platforms,
    check_supported_system,
)
from .openmm_export import (
    PARTICLE_MASS_AMU,
    double_well_system,
    energy_to_openmm_system,
    lennard_jones_system,
    pair_potential_system,
)

__all__ = [
    "PARTICLE_MASS_AMU",
    "TRANSLATION_INVARIANT_FORCES",
    "OpenMMEnergy",
    "energy_to_openmm_system",
    "pair_potential_system",
    "lennard_jones_system",
    "double_well_system",
    "check_supported_system",
    "available_platforms",
]
