"""idem_md: iterated Denoising Energy Matching samplers for Boltzmann densities.

>>> from idem_md import get_energy
>>> get_energy("dw4").dim
8
"""

from .energies import Energy, available_energies, get_energy

__version__ = "0.1.0"

__all__ = ["Energy", "get_energy", "available_energies", "__version__"]
