"""Alanine dipeptide (ACE-ALA-NME) in vacuum: AMBER ff14SB, no cutoff, no constraints.

The geometry ``idem_md/data/alanine_dipeptide.pdb`` is openmmtools' ``alanine-dipeptide-gbsa``
PDB (MIT licence), rewritten by OpenMM's ``PDBFile`` with elements and bonds. The System is
built by OpenMM's ``amber14-all.xml`` (ff14SB) with ``NoCutoff``, ``constraints=None`` and no
``CMMotionRemover``: 22 atoms, 21 bonds, 36 angles, 42 torsions, one NonbondedForce.

The registered names ``"aldp"`` and ``"alanine_dipeptide"`` build :class:`AlanineDipeptide`
(a :class:`~idem_md.energies.forcefield.ForceFieldEnergy`, batched in torch) at
``temperature`` kelvin (default 300 K); ``alanine_dipeptide_system()`` gives the OpenMM System
for :class:`~idem_md.energies.openmm_bridge.OpenMMEnergy` or OpenMM MD.

This module imports OpenMM at import time; ``import idem_md`` does not import it.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np

from .forcefield import ForceFieldEnergy

try:
    import openmm
    from openmm import app
except ImportError as exc:  # pragma: no cover - openmm is a declared dependency
    raise ImportError("idem_md.energies.alanine requires OpenMM: pip install openmm") from exc

__all__ = ["AlanineDipeptide", "alanine_dipeptide_pdb", "alanine_dipeptide_system", "PHI_ATOMS", "PSI_ATOMS",
           "DEFAULT_TEMPERATURE_K"]

#: Backbone dihedral atoms (0-based, in the shipped PDB): phi = C(ACE)-N-CA-C, psi = N-CA-C-N(NME).
PHI_ATOMS: tuple[int, int, int, int] = (4, 6, 8, 14)
PSI_ATOMS: tuple[int, int, int, int] = (6, 8, 14, 16)
#: Default temperature of the registered system, kelvin.
DEFAULT_TEMPERATURE_K: float = 300.0
_FORCE_FIELD = "amber14-all.xml"


def alanine_dipeptide_pdb() -> "app.PDBFile":
    """The shipped PDB (topology with elements and bonds; positions in nm as ``pdb.positions``)."""
    ref = resources.files("idem_md") / "data" / "alanine_dipeptide.pdb"
    with resources.as_file(ref) as path:
        return app.PDBFile(str(path))


def alanine_dipeptide_system() -> "openmm.System":
    """ff14SB System of the shipped PDB: NoCutoff, no constraints, no CMMotionRemover (kJ/mol, nm, amu)."""
    pdb = alanine_dipeptide_pdb()
    ff = app.ForceField(_FORCE_FIELD)
    return ff.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False,
                           removeCMMotion=False)


class AlanineDipeptide(ForceFieldEnergy):
    """Alanine dipeptide in vacuum (ff14SB) as a batched torch energy in nm and kT.

    Parameters
    ----------
    temperature : float
        Kelvin (default 300 K); sets the kT unit (``R T`` = 2.494 kJ/mol at 300 K).
    name : str
        Label (the registry sets it to the name it was asked for).
    backend : str
        ``"auto"``, ``"torch"`` or ``"numba"``, see :class:`~idem_md.energies.forcefield.ForceFieldEnergy`.

    Attributes
    ----------
    topology : openmm.app.Topology
        Atom names, elements, residues and bonds (for .pdb / .dcd files and mdtraj).

    Examples
    --------
    >>> aldp = AlanineDipeptide()
    >>> x0 = aldp.initial_positions()  # (1, 22, 3) nm
    >>> aldp.energy(x0).shape
    torch.Size([1])
    """

    def __init__(self, temperature: float = DEFAULT_TEMPERATURE_K, name: str = "aldp", backend: str = "auto"):
        pdb = alanine_dipeptide_pdb()
        super().__init__(alanine_dipeptide_system(), temperature=temperature, name=name, backend=backend)
        self.topology = pdb.topology
        self._positions_nm = np.asarray(pdb.getPositions(asNumpy=True)._value, dtype=np.float64)  # (22, 3)

    def initial_positions(self):
        """The PDB geometry as a ``(1, 22, 3)`` float64 tensor in nm."""
        import torch

        return torch.as_tensor(self._positions_nm[None].copy())

    def initial_configuration(self, seed: int = 0):
        """MD start: the PDB geometry, centred, ``(22, 3)`` float64 nm (``seed`` is unused)."""
        x = self.initial_positions()[0]
        return x - x.mean(0)

    def _identity_extra(self) -> dict[str, Any]:
        return {**super()._identity_extra(), "force_field": _FORCE_FIELD}
