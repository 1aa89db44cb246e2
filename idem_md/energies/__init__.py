"""Boltzmann targets: the benchmark energies and the bridges to ASE and OpenMM."""

from .base import Energy, EnergyEvaluationError
from .double_well import MultiDoubleWell
from .gmm import GaussianMixture, gmm40_means
from .lennard_jones import LennardJonesCluster
from .registry import available_energies, get_energy, register_energy

__all__ = [
    "Energy",
    "EnergyEvaluationError",
    "GaussianMixture",
    "gmm40_means",
    "LennardJonesCluster",
    "MultiDoubleWell",
    "available_energies",
    "get_energy",
    "register_energy",
]
