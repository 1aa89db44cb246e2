"""Bridges between idem_md energies and the engines: :mod:`idem_md.bridges.openmm`, :mod:`idem_md.bridges.ase`.

Out of idem_md, ``energy.to_openmm_system()`` / ``energy.to_ase_calculator()`` work for
any :class:`~idem_md.energies.base.Energy` through its hooks; into idem_md,
:class:`~idem_md.bridges.openmm.OpenMMEnergy` and :class:`~idem_md.bridges.ase.ASEEnergy`
wrap an OpenMM System or an ASE calculator as an ``Energy``. The submodules import
OpenMM / ASE when loaded; this package loads them on first attribute access.

>>> from idem_md import bridges
>>> sorted(bridges.__all__)[:2]
['ASEEnergy', 'EnergyCalculator']
"""

from __future__ import annotations

__all__ = ["ASEEnergy", "EnergyCalculator", "OpenMMEnergy", "energy_to_openmm_system", "make_atoms"]

_LAZY = {"ASEEnergy": ".ase", "EnergyCalculator": ".ase", "make_atoms": ".ase",
         "OpenMMEnergy": ".openmm", "energy_to_openmm_system": ".openmm"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
