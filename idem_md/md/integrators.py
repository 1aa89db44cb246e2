"""MD engines for targets without an OpenMM System: batched torch BAOAB Langevin, and ASE's Langevin.

:class:`TorchLangevinEngine` needs nothing but ``energy.energy_and_forces``, so any
:class:`~idem_md.energies.base.Energy` (a user's own subclass included) gets an MD
baseline; it integrates ``n_chains`` independent chains at once on the energy's
device. :class:`ASELangevinEngine` runs ``ase.md.langevin.Langevin`` on
``energy.to_ase_atoms`` with ``energy.to_ase_calculator()`` (ASE targets' own atoms,
masses and calculator).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..energies.base import Energy
from ..units import BOLTZMANN_EV_PER_K
from .config import MDBlowUpError, MDConfig
from .engine import MDEngine, engine_seeds, to_numpy

__all__ = ["ASELangevinEngine", "TorchLangevinEngine"]

#: ASE femtoseconds per picosecond (MDConfig times of physical targets are in ps).
FS_PER_PS = 1000.0


class TorchLangevinEngine(MDEngine):
    r"""BAOAB Langevin dynamics (Leimkuhler and Matthews 2013) in torch, unit masses.

    One step with time step :math:`h`, friction :math:`\gamma` and
    :math:`c_1 = e^{-\gamma h}`: ``v += h/2 F``; ``x += h/2 v``;
    ``v = c1 v + sqrt((1 - c1^2) kT) xi``; ``x += h/2 v``; ``F = F(x)``; ``v += h/2 F``:
    one ``energy_and_forces`` call on the ``(C, n, d)`` batch per step. Every particle
    has unit mass in the energy's units, so the time unit is
    ``length * sqrt(mass / energy)`` (for reduced targets the same reduced time as the
    OpenMM mapping: 1 ps). BAOAB's configurational sampling error is second order in
    ``h`` and small at the default 0.005 for the benchmarks (docs/md_baselines.md).
    """

    name = "torch"

    def __init__(self, energy: Energy, config: MDConfig, x0: np.ndarray):
        super().__init__(energy, config, x0)
        self.device = energy.home_device()
        floats = [b.dtype for b in energy.buffers() if b.is_floating_point()]
        self.dtype = floats[0] if floats else torch.float64
        seeds = engine_seeds(config.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(int(seeds[0]))
        self.velocity_generator = torch.Generator(device=self.device).manual_seed(int(seeds[1]))
        self.x = torch.as_tensor(x0, dtype=self.dtype, device=self.device).clone()  # (C, n, d)
        self.v = torch.zeros_like(self.x)
        self._e: torch.Tensor | None = None  # (C,) at self.x
        self._f: torch.Tensor | None = None  # (C, n, d) at self.x
        self.n_setup_evaluations = 0
        self.platform_name = f"torch {self.device.type} {str(self.dtype).replace('torch.', '')}"

    @property
    def n_force_evaluations(self) -> int:
        return super().n_force_evaluations + self.n_setup_evaluations

    def _evaluate(self) -> None:
        self._e, self._f = self.energy.energy_and_forces(self.x)
        self._e, self._f = self._e.detach(), self._f.detach()

    def _current(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._e is None:  # after a write: forces at the new positions
            self._evaluate()
            self.n_setup_evaluations += self.n_chains
        return self._e, self._f

    def _advance(self, k: int) -> None:
        h, kT = self.config.timestep, self.energy.kT
        c1 = math.exp(-self.config.friction * h)
        c2 = math.sqrt((1.0 - c1 * c1) * kT)
        _, f = self._current()
        x, v = self.x, self.v
        for _ in range(k):
            v = v + 0.5 * h * f
            x = x + 0.5 * h * v
            v = c1 * v + c2 * torch.randn(x.shape, generator=self.generator, device=self.device, dtype=self.dtype)
            x = x + 0.5 * h * v
            if not bool(torch.isfinite(x).all()):
                raise MDBlowUpError(f"MD blew up after {self.n_steps} steps of {self.energy.name} (torch, timestep "
                                    f"{h:g}): non-finite positions; reduce MDConfig.timestep")
            self.x = x
            self._evaluate()
            f = self._f
            v = v + 0.5 * h * f
        self.x, self.v = x, v

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        e, _ = self._current()
        return to_numpy(self.x), to_numpy(e)

    def _write(self, x: np.ndarray) -> None:
        self.x = torch.as_tensor(x, dtype=self.dtype, device=self.device).reshape(self.x.shape).clone()
        self._e = self._f = None

    def _energy_forces(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xt = torch.as_tensor(x, dtype=self.dtype, device=self.device).reshape(self.x.shape)
        e, f = self.energy.energy_and_forces(xt)
        return to_numpy(e), to_numpy(f)

    def thermalize(self) -> None:
        g = self.velocity_generator
        self.v = math.sqrt(self.energy.kT) * torch.randn(self.x.shape, generator=g, device=self.device,
                                                         dtype=self.dtype)

    def metadata(self) -> dict[str, Any]:
        return {"torch_version": torch.__version__, "n_setup_evaluations": self.n_setup_evaluations}


class ASELangevinEngine(MDEngine):
    """ASE's ``Langevin`` on ``energy.to_ase_atoms(x0)`` with ``energy.to_ase_calculator()`` (one chain).

    Energies from ASE (eV) are divided by ``energy.ase_energy_unit_ev``. Times: a
    reduced target's time step is read in ASE's own time unit (Angstrom
    sqrt(amu / eV), which with 1 Angstrom, 1 eV and 1 amu is the reduced time unit);
    a target in physical units (``length_unit`` not ``"reduced"``) has its time step
    in ps and friction in 1/ps. The centre of mass is held fixed (``fixcm``) for
    translation-invariant targets (``FixCom``). Force evaluations are counted one per step.
    """

    name = "ase"

    def __init__(self, energy: Energy, config: MDConfig, x0: np.ndarray):
        from ase import units
        from ase.md.langevin import Langevin

        if x0.shape[0] != 1:
            raise ValueError(f'config.n_chains must be 1 for engine="ase", got {x0.shape[0]} (use engine="torch")')
        super().__init__(energy, config, x0)
        self.scale = float(energy.ase_energy_unit_ev)  # eV per energy unit
        time_unit = 1.0 if energy.length_unit == "reduced" else FS_PER_PS * units.fs  # ASE time per config time
        self.atoms = energy.to_ase_atoms(x0[0])
        self.atoms.calc = energy.to_ase_calculator()
        if self.shift_invariant:  # ASE's advice over Langevin(fixcm=True), which biases small systems
            from ase.constraints import FixCom

            self.atoms.set_constraint(FixCom())
        seeds = engine_seeds(config.seed)
        self.rng = np.random.RandomState(int(seeds[1]))
        self.dyn = Langevin(self.atoms, timestep=config.timestep * time_unit, temperature_K=self.temperature,
                            friction=config.friction / time_unit, fixcm=False,
                            rng=np.random.RandomState(int(seeds[0])))
        self.platform_name = f"ase {type(self.atoms.calc).__name__}"

    @property
    def temperature(self) -> float:
        """Thermostat temperature in K: ``kT * ase_energy_unit_ev / k_B``."""
        return self.energy.kT * self.energy.ase_energy_unit_ev / BOLTZMANN_EV_PER_K

    def _pad(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((self.n, 3))
        out[:, : self.d] = np.asarray(x).reshape(self.n, self.d)
        return out

    def _advance(self, k: int) -> None:
        self.dyn.run(k)

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        e = self.atoms.get_potential_energy() / self.scale
        return self.atoms.get_positions()[None, :, : self.d].copy(), np.array([e])

    def _write(self, x: np.ndarray) -> None:
        self.atoms.set_positions(self._pad(x))

    def _energy_forces(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._write(x)
        e = self.atoms.get_potential_energy() / self.scale
        return np.array([e]), (self.atoms.get_forces()[:, : self.d] / self.scale)[None]

    def thermalize(self) -> None:
        from ase.md import velocitydistribution as vd

        draw = getattr(vd, "thermalize_momenta", None) or vd.MaxwellBoltzmannDistribution  # ASE >= 3.28 / older
        draw(self.atoms, temperature_K=self.temperature, rng=self.rng)
        if self.shift_invariant:
            vd.Stationary(self.atoms)

    def metadata(self) -> dict[str, Any]:
        import ase

        return {"ase_version": ase.__version__}
