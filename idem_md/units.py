"""Named unit constants used at the input/output edges.

Inside idem_md every energy works in *reduced units*: lengths in units of the
pair length scale (sigma or r_m), energies in units of epsilon, and each energy
carries its own ``kT`` in the same energy unit. Conversions to the units of an
external engine happen only in the bridges (:mod:`idem_md.energies.ase_bridge`,
:mod:`idem_md.energies.openmm_bridge`) and the trajectory writers
(:mod:`idem_md.io`), always through the constants below.

Mapping used by the bridges *out* of idem_md (reduced -> engine):

* OpenMM: one reduced length unit is one nanometre and one reduced energy unit
  is one kJ/mol; the thermostat temperature is chosen so that
  ``k_B * T = kT`` in kJ/mol, i.e. ``T = kT / MOLAR_GAS_CONSTANT_KJ_PER_MOL_K``.
* ASE: one reduced length unit is one Angstrom and one reduced energy unit is
  one eV.

Sample files (:mod:`idem_md.samples`: ``.xyz``, ``.dcd`` + ``.pdb``, ``.npz``) use one convention for
reduced systems in every format: one reduced length unit is one Angstrom in the file
(:data:`REDUCED_LENGTH_IN_FILES_ANGSTROM`), so the numbers in a file are the reduced coordinates; real
systems (``Energy.length_unit`` ``"nm"`` or ``"angstrom"``) are written in their engine's unit
(docs/units.md).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = [
    "REDUCED_LENGTH_IN_NM",
    "REDUCED_LENGTH_IN_ANGSTROM",
    "REDUCED_LENGTH_IN_FILES_ANGSTROM",
    "ANGSTROM_PER_NM",
    "NM_PER_ANGSTROM",
    "KJ_PER_MOL_PER_EV",
    "EV_PER_KJ_PER_MOL",
    "MOLAR_GAS_CONSTANT_KJ_PER_MOL_K",
    "BOLTZMANN_EV_PER_K",
    "temperature_for_reduced_kT",
    "check_temperature",
]

#: Nanometres per reduced length unit in OpenMM Systems, .dcd/.pdb files and mdtraj.
REDUCED_LENGTH_IN_NM: float = 1.0
#: Angstrom per reduced length unit in ASE calculators and .xyz files.
REDUCED_LENGTH_IN_ANGSTROM: float = 1.0
#: Angstrom per reduced length unit in every sample file (.xyz, .dcd, .pdb): the numbers in the file are the
#: reduced coordinates (mdtraj, which holds nanometres, gets ``x * REDUCED_LENGTH_IN_FILES_ANGSTROM * NM_PER_ANGSTROM``).
REDUCED_LENGTH_IN_FILES_ANGSTROM: float = 1.0
#: Angstrom in one nanometre.
ANGSTROM_PER_NM: float = 10.0
#: Nanometres in one Angstrom.
NM_PER_ANGSTROM: float = 1.0 / ANGSTROM_PER_NM
#: kJ/mol in one eV (CODATA 2018: e * N_A / 1000).
KJ_PER_MOL_PER_EV: float = 96.48533212331002
#: eV in one kJ/mol.
EV_PER_KJ_PER_MOL: float = 1.0 / KJ_PER_MOL_PER_EV
#: Molar gas constant R = k_B * N_A in kJ/(mol K) (CODATA 2018, exact).
MOLAR_GAS_CONSTANT_KJ_PER_MOL_K: float = 8.314462618e-3
#: Boltzmann constant in eV/K (CODATA 2018, exact).
BOLTZMANN_EV_PER_K: float = 8.617333262e-5


def temperature_for_reduced_kT(kT: float) -> float:
    """Temperature in kelvin at which ``k_B T`` equals ``kT`` read as kJ/mol.

    Parameters
    ----------
    kT : float
        Thermal energy in reduced units (mapped to kJ/mol).

    Returns
    -------
    float
        Temperature in K.

    Examples
    --------
    >>> round(temperature_for_reduced_kT(1.0), 3)
    120.272
    """
    if not kT > 0:
        raise ValueError(f"kT must be > 0 (reduced energy units), got {kT!r}")
    return kT / MOLAR_GAS_CONSTANT_KJ_PER_MOL_K


def check_temperature(temperature: Any) -> float:
    """Validate a thermostat temperature in kelvin and return it as a float.

    Raises ``TypeError`` for non-numbers and ``ValueError`` for non-finite or non-positive values.

    >>> check_temperature(300)
    300.0
    """
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a positive float in kelvin, got {type(temperature).__name__}")
    temperature = float(temperature)
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite positive float in kelvin, got {temperature!r}")
    return temperature
