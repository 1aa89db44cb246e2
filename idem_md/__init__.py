"""idem_md: iterated Denoising Energy Matching samplers for Boltzmann densities.

>>> from idem_md import IDEMSampler, get_energy
>>> get_energy("dw4").dim
8
"""

from .config import IDEMConfig, preset
from .energies import Energy, available_energies, get_energy
from .sampler import IDEMSampler

__version__ = "0.1.0"

__all__ = [
    "Energy",
    "IDEMConfig",
    "IDEMSampler",
    "MDConfig",
    "Samples",
    "available_energies",
    "evaluate",
    "compare_with_md",
    "get_energy",
    "preset",
    "run_md",
    "run_md_with_budget",
    "__version__",
]

# Heavier pieces (mdtraj, ASE, POT, matplotlib) load on first use.
_LAZY = {"Samples": ".io", "evaluate": ".evaluation", "compare_with_md": ".evaluation",
         "ASEEnergy": ".energies", "OpenMMEnergy": ".energies",
         "MDConfig": ".md", "run_md": ".md", "run_md_with_budget": ".md"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
