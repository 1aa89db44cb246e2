"""Boltzmann targets: the :class:`Energy` base class, its hooks and the benchmark energies.

The bridges to ASE and OpenMM live in :mod:`idem_md.bridges`; ``ASEEnergy`` and
``OpenMMEnergy`` are re-exported here lazily.
"""

from .base import Energy, EnergyEvaluationError
from .double_well import MultiDoubleWell
from .gmm import GaussianMixture, gmm40_means
from .lennard_jones import LennardJonesCluster
from .pair import PairPotential
from .registry import available_energies, get_energy, register_energy

__all__ = [
    "ASEEnergy",
    "OpenMMEnergy",
    "Energy",
    "EnergyEvaluationError",
    "GaussianMixture",
    "gmm40_means",
    "LennardJonesCluster",
    "MultiDoubleWell",
    "PairPotential",
    "available_energies",
    "get_energy",
    "register_energy",
]

# The bridges import ASE / OpenMM; load them on first use so that
# ``import idem_md`` stays light.
_LAZY_BRIDGES = {"ASEEnergy": "..bridges.ase", "OpenMMEnergy": "..bridges.openmm"}


def __getattr__(name: str):
    if name in _LAZY_BRIDGES:
        import importlib

        return getattr(importlib.import_module(_LAZY_BRIDGES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
