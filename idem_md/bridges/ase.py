"""Bridges between idem_md energies and ASE.

Out of idem_md, :class:`EnergyCalculator` (also ``energy.to_ase_calculator()``)
evaluates any idem_md :class:`~idem_md.energies.base.Energy` as an ASE calculator.
Into idem_md, :class:`ASEEnergy` wraps any ASE calculator as an ``Energy`` in
Angstrom and kT units.

Unit mapping out of idem_md (see ``docs/energies.md``): one reduced length is one
Angstrom and one reduced energy is one eV (times the energy's ``ase_energy_unit_ev``),
so the numbers are unchanged. A 2D
energy such as DW-4 reads x and y of the (3D) ASE atoms, ignores z and returns a
zero z force.

This module imports ASE at import time; ``import idem_md`` does not import it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..energies.base import Energy, EnergyEvaluationError
from ..units import BOLTZMANN_EV_PER_K, check_temperature

try:
    from ase import Atoms
    from ase.calculators.calculator import Calculator, all_changes
except ImportError as exc:  # pragma: no cover - ase is a declared dependency
    raise ImportError("idem_md.bridges.ase requires ASE: pip install ase") from exc

__all__ = ["EnergyCalculator", "ASEEnergy", "make_atoms"]


class EnergyCalculator(Calculator):
    """ASE calculator for an idem_md energy: 1 reduced length = 1 Angstrom,
    1 reduced energy = 1 eV.

    Each call evaluates ``energy.energy_and_forces`` on one configuration in
    float64 on the energy's device.

    Parameters
    ----------
    energy : Energy
        Any idem_md energy; the Atoms must hold ``energy.n_particles`` atoms.
        Coordinates beyond ``energy.spatial_dim`` (z for DW-4) are ignored and
        get zero force.
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator`.

    Examples
    --------
    >>> import torch
    >>> from idem_md import get_energy
    >>> dw = get_energy("dw4")
    >>> atoms = make_atoms(dw, torch.tensor([[0., 0.], [4., 0.], [0., 4.], [4., 4.]]))
    >>> atoms.calc = dw.to_ase_calculator()
    >>> atoms.get_forces().shape
    (4, 3)
    """

    implemented_properties = ["energy", "forces"]

    def __init__(self, energy: Energy, **kwargs: Any):
        if not isinstance(energy, Energy):
            raise TypeError(f"energy must be an idem_md Energy, got {type(energy).__name__}")
        super().__init__(**kwargs)
        self.target = energy

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        n, d = self.target.n_particles, self.target.spatial_dim
        pos = self.atoms.get_positions()  # (n_atoms, 3) Angstrom = reduced length
        if pos.shape[0] != n:
            raise ValueError(f"atoms must hold {n} atoms for {self.target.name}, got {pos.shape[0]}")
        device = self.target.home_device()
        x = torch.as_tensor(pos[:, :d], dtype=torch.float64, device=device)[None]  # (1, n, d)
        e, f = self.target.energy_and_forces(x)
        scale = self.target.ase_energy_unit_ev  # eV per energy unit (1 for reduced units)
        forces = np.zeros((n, 3))
        forces[:, :d] = scale * f[0].detach().cpu().numpy()  # eV/Angstrom
        self.results = {"energy": scale * float(e[0]), "forces": forces}


def make_atoms(energy: Energy, positions: Any, symbol: str = "X") -> Atoms:
    """ASE Atoms for one configuration of an idem_md energy (reduced length = Angstrom).

    Parameters
    ----------
    energy : Energy
        Gives the particle count and spatial dimension.
    positions : array-like
        ``(n_particles, spatial_dim)`` or ``(dim,)`` in reduced units; 2D (1D)
        positions are padded with z = 0 (and y = 0).
    symbol : str
        Chemical symbol of every atom; the default ``"X"`` is ASE's dummy atom (1 amu).

    Returns
    -------
    ase.Atoms
        Non-periodic, no cell, no calculator attached.
    """
    n, d = energy.n_particles, energy.spatial_dim
    if isinstance(positions, torch.Tensor):
        positions = positions.detach().cpu().numpy()
    pos = np.asarray(positions, dtype=np.float64)
    if pos.size != n * d:
        raise ValueError(f"positions must have shape ({n}, {d}) or ({n * d},) for {energy.name}, got {pos.shape}")
    xyz = np.zeros((n, 3))
    xyz[:, :d] = pos.reshape(n, d)
    return Atoms(symbols=[symbol] * n, positions=xyz)


class ASEEnergy(Energy):
    """An ASE calculator as an idem_md target: coordinates in Angstrom, energies in kT.

    ``E = E_ase[eV] / (k_B T)`` with ``k_B`` = :data:`~idem_md.units.BOLTZMANN_EV_PER_K`,
    forces likewise in kT/Angstrom, so :attr:`kT` is 1 and ``log_prob = -E``.
    ASE calculators work on one configuration at a time: a batch is evaluated in
    a loop over one private copy of ``atoms`` whose positions are overwritten.

    Parameters
    ----------
    atoms : ase.Atoms
        Template: species, masses, cell and periodicity of every configuration; its
        positions are the MD start (:meth:`initial_configuration`). It is copied; the
        copy carries ``calculator``.
    calculator : ase.calculators.calculator.BaseCalculator
        Any ASE calculator providing ``energy`` and ``forces``.
    temperature : float
        Temperature in kelvin, > 0; sets the kT unit.
    name : str, optional
        Label; defaults to ``"ase-<calculator name>"``.
    translation_invariant : bool, optional
        Whether the calculator's energy is invariant under a common shift of all atoms;
        default: True for more than one atom (interatomic potentials), pass False for an
        external field or a fixed surface.

    Notes
    -----
    The returned energies are detached: differentiate with the forces from
    :meth:`energy_and_forces`, not with autograd. An exception raised by the
    calculator is re-raised as :class:`EnergyEvaluationError` naming the batch index.

    Examples
    --------
    >>> import torch
    >>> from ase import Atoms
    >>> from ase.calculators.lj import LennardJones
    >>> target = ASEEnergy(Atoms("Ar2"), LennardJones(sigma=3.4, epsilon=0.0104, rc=30.0), temperature=120.0)
    >>> target.energy(torch.tensor([[[0., 0., 0.], [3.82, 0., 0.]]], dtype=torch.float64)).shape
    torch.Size([1])
    """

    length_unit = "angstrom"
    energy_unit = "kT"
    default_md_engine = "ase"

    def __init__(self, atoms: Atoms, calculator: Any, temperature: float, name: str | None = None,
                 translation_invariant: bool | None = None):
        if not isinstance(atoms, Atoms):
            raise TypeError(f"atoms must be an ase.Atoms, got {type(atoms).__name__}")
        if len(atoms) < 1:
            raise ValueError("atoms must contain at least one atom, got 0")
        for method in ("get_potential_energy", "get_forces"):
            if not callable(getattr(calculator, method, None)):
                raise TypeError(
                    f"calculator must be an ASE calculator with {method}(), got {type(calculator).__name__}"
                )
        temperature = check_temperature(temperature)
        calc_name = getattr(calculator, "name", type(calculator).__name__.lower())
        super().__init__(len(atoms), 3, kT=1.0, name=name or f"ase-{calc_name}")
        self.temperature = temperature
        #: k_B T in eV: the energy unit of this target.
        self.kT_ev = BOLTZMANN_EV_PER_K * temperature
        self.ase_energy_unit_ev = self.kT_ev
        self.translation_invariant = len(atoms) > 1 if translation_invariant is None else bool(translation_invariant)
        self._atoms = atoms.copy()
        self._atoms.calc = calculator
        self._start = atoms.get_positions().copy()  # (n, 3) Angstrom

    def initial_configuration(self, seed: int = 0) -> torch.Tensor:
        """The template's positions, ``(n, 3)`` float64 Angstrom (``seed`` is unused)."""
        return torch.as_tensor(self._start.copy(), dtype=torch.float64)

    def to_ase_calculator(self) -> Any:
        """The wrapped calculator itself (eV, Angstrom)."""
        return self.calculator

    def to_ase_atoms(self, positions: Any) -> Atoms:
        """A copy of the template (species, masses, cell) at ``positions`` ``(n, 3)`` Angstrom, no calculator."""
        if isinstance(positions, torch.Tensor):
            positions = positions.detach().cpu().numpy()
        atoms = self._atoms.copy()
        atoms.calc = None
        atoms.set_positions(np.asarray(positions, dtype=np.float64).reshape(len(atoms), 3))
        return atoms

    @property
    def atoms(self) -> Atoms:
        """The private Atoms copy (with the calculator attached) used for evaluation."""
        return self._atoms

    @property
    def calculator(self) -> Any:
        return self._atoms.calc

    def _identity_extra(self) -> dict[str, Any]:
        return dict(temperature=self.temperature, calculator=type(self.calculator).__name__,
                    symbols=self._atoms.get_chemical_formula())

    def _evaluate(self, x: torch.Tensor, with_forces: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        pos = x.detach().to("cpu", torch.float64).numpy()  # (B, n, 3) Angstrom
        energies = np.empty(pos.shape[0])
        forces = np.empty(pos.shape) if with_forces else None
        for b in range(pos.shape[0]):
            try:
                self._atoms.set_positions(pos[b])
                energies[b] = self._atoms.get_potential_energy()  # eV
                if with_forces:
                    forces[b] = self._atoms.get_forces()  # eV/Angstrom
            except Exception as exc:
                raise EnergyEvaluationError(
                    f"ASE calculator {type(self.calculator).__name__} failed on configuration {b} "
                    f"of the batch ({self.name}): {type(exc).__name__}: {exc}"
                ) from exc
        scale = 1.0 / self.kT_ev  # eV -> kT
        e = torch.as_tensor(energies * scale, dtype=x.dtype, device=x.device)
        f = None if forces is None else torch.as_tensor(forces * scale, dtype=x.dtype, device=x.device)
        return e, f

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return self._evaluate(x, with_forces=False)[0]

    def _energy_and_forces(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._evaluate(x, with_forces=True)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temperature={self.temperature} K, calculator={type(self.calculator).__name__}"
