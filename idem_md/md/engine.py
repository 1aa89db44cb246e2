"""MD engines behind :func:`idem_md.md.run_md`: the common loop and the OpenMM engine.

An engine holds ``n_chains`` configurations ``(C, n, d)`` in the energy's units and
offers ``minimize``, ``thermalize``, ``step`` and ``frame``; :class:`MDEngine` does the
bookkeeping every engine shares (evaluation counts, the blow-up check, recentring of a
drifted translation-invariant cluster, the L-BFGS minimiser). :func:`make_engine` picks
one by name (``MDConfig.engine``, or the energy's ``default_md_engine`` for ``"auto"``);
the torch BAOAB and ASE engines are in :mod:`idem_md.md.integrators`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..energies.base import Energy
from ..units import MOLAR_GAS_CONSTANT_KJ_PER_MOL_K
from .config import MDBlowUpError, MDConfig

__all__ = ["MDEngine", "OpenMMEngine", "engine_seeds", "make_engine", "to_numpy"]

#: Up to this many particles the Reference platform is the default: for the
#: benchmark systems (4-55 particles, custom bond forces) it measured 3-70x
#: faster per step than the CPU platform on a 2-core machine (docs/md_baselines.md).
REFERENCE_PLATFORM_MAX_PARTICLES = 256
#: Recentre a translation-invariant cluster that has diffused this far (length units) from the origin.
RECENTRE_DISTANCE = 100.0
#: Steps between checks of the state (blow-up bound, drift) inside one ``step`` call.
CHECK_INTERVAL = 1000
#: Positions may spread to this many times (1 + the starting extent) before the run counts as blown up.
POSITION_BOUND_FACTOR = 1000.0


class _BudgetExhausted(Exception):
    pass


class MDEngine:
    """Shared bookkeeping of an MD engine; subclasses implement the four ``_`` methods.

    Subclasses implement ``_advance(k)`` (k integrator steps), ``_read()`` (positions
    ``(C, n, d)`` and energies ``(C,)`` in the energy's units, numpy), ``_write(x)`` and
    ``_energy_forces(x) -> (e (C,), f (C, n, d))``, plus :meth:`thermalize`.
    """

    name = "engine"

    def __init__(self, energy: Energy, config: MDConfig, x0: np.ndarray):
        self.energy, self.config = energy, config
        self.n, self.d = energy.n_particles, energy.spatial_dim
        self.n_chains = int(x0.shape[0])
        self.shift_invariant = bool(energy.translation_invariant)
        self.dof = self.n * self.d - (self.d if self.shift_invariant else 0)
        self.n_steps = 0
        self.n_minimization_evaluations = 0
        self.n_energy_queries = 0
        self.n_state_checks = 0  # reads of the state inside step() for the blow-up check (not frames)
        self._since_check = 0
        self._lowest = math.inf
        extent = float(np.abs(self._centred(x0)).max()) if x0.size else 0.0
        self._bound = POSITION_BOUND_FACTOR * (1.0 + extent)
        self.platform_name = self.name

    # ------------------------------------------------------------ contract
    def _advance(self, k: int) -> None:
        raise NotImplementedError

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _write(self, x: np.ndarray) -> None:
        raise NotImplementedError

    def _energy_forces(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def thermalize(self) -> None:
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        """Engine-specific entries of :attr:`MDRun.metadata`."""
        return {}

    @property
    def temperature(self) -> float:
        """Thermostat temperature in K at the OpenMM unit mapping (``kT * openmm_energy_unit_kj_per_mol / R``)."""
        return self.energy.kT * self.energy.openmm_energy_unit_kj_per_mol / MOLAR_GAS_CONSTANT_KJ_PER_MOL_K

    # ------------------------------------------------------------ shared
    @property
    def n_force_evaluations(self) -> int:
        return self.n_steps * self.n_chains + self.n_minimization_evaluations

    def _centred(self, x: np.ndarray) -> np.ndarray:
        return x - x.mean(axis=-2, keepdims=True) if self.shift_invariant else x

    def step(self, n_steps: int) -> None:
        """``n_steps`` integrator steps, checking the state every :data:`CHECK_INTERVAL` steps."""
        while n_steps > 0:
            k = min(n_steps, CHECK_INTERVAL - self._since_check)
            self._advance(k)
            self.n_steps += k
            n_steps -= k
            self._since_check += k
            if self._since_check >= CHECK_INTERVAL:
                self._since_check = 0
                x, e = self._read()
                self.n_state_checks += 1
                self.check_state(x, e)
                self._recentre_if_drifted(x)

    def frame(self) -> tuple[np.ndarray, np.ndarray]:
        """Current positions ``(C, n, d)`` and energies ``(C,)``, checked for a blow-up."""
        x, e = self._read()
        self.n_energy_queries += 1
        self.check_state(x, e)
        return x, e

    def check_state(self, x: np.ndarray, e: np.ndarray) -> None:
        """Raise :class:`MDBlowUpError` (one line) for non-finite or runaway energies or positions."""
        dt = self.config.timestep
        where = f"after {self.n_steps} steps of {self.energy.name} ({self.name}, timestep {dt:g})"
        if not (np.all(np.isfinite(e)) and np.all(np.isfinite(x))):
            raise MDBlowUpError(f"MD blew up {where}: non-finite energy or positions; reduce MDConfig.timestep")
        spread = float(np.abs(self._centred(x)).max())
        if spread > self._bound:
            raise MDBlowUpError(f"MD blew up {where}: a coordinate reached {spread:.3g} length units (bound "
                                f"{self._bound:.3g}); reduce MDConfig.timestep")
        self._lowest = min(self._lowest, float(e.min()))
        rise = (float(e.max()) - self._lowest) / self.energy.kT
        if rise > self.config.max_energy_rise_per_dof * self.dof:
            raise MDBlowUpError(
                f"MD blew up {where}: energy {float(e.max()):.4g} is {rise:.3g} kT above the lowest seen "
                f"({self._lowest:.4g}), bound {self.config.max_energy_rise_per_dof:g} kT x {self.dof} dof; "
                "reduce MDConfig.timestep"
            )

    def _recentre_if_drifted(self, x: np.ndarray) -> None:
        """Shift a translation-invariant cluster back to the origin once it has diffused far,
        so that single-precision engines keep resolving pair distances (the energy is unchanged)."""
        if self.shift_invariant and np.abs(x).max() >= RECENTRE_DISTANCE:
            self._write(self._centred(x))

    def minimize(self, max_evaluations: int) -> float:
        """L-BFGS (scipy) on all chains at once, every configuration evaluated counted; returns
        the lowest mean energy per chain reached (energy units) and leaves the engine there."""
        from scipy.optimize import minimize

        x0, _ = self._read()
        shape = x0.shape
        best = {"e": math.inf, "x": x0.ravel().copy()}

        def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
            if self.n_minimization_evaluations + self.n_chains > max_evaluations:
                raise _BudgetExhausted
            e, f = self._energy_forces(flat.reshape(shape))
            self.n_minimization_evaluations += self.n_chains
            total = float(np.sum(e))
            if not math.isfinite(total):
                return math.inf, np.zeros_like(flat)
            if total < best["e"]:
                best["e"], best["x"] = total, flat.copy()
            return total, -np.asarray(f, dtype=np.float64).ravel()

        if max_evaluations >= self.n_chains:
            try:
                minimize(fun, best["x"], jac=True, method="L-BFGS-B",
                         options={"maxfun": max_evaluations, "maxiter": max_evaluations, "gtol": 1e-6})
            except _BudgetExhausted:
                pass
        self._write(best["x"].reshape(shape))
        self._lowest = min(self._lowest, best["e"] / self.n_chains)  # the blow-up bound's reference
        return best["e"] / self.n_chains


# ------------------------------------------------------------------ OpenMM
class OpenMMEngine(MDEngine):
    """OpenMM ``LangevinMiddleIntegrator`` on ``energy.to_openmm_system()`` (one chain).

    Lengths map to nm one to one; energies read from OpenMM in kJ/mol are divided by
    ``energy.openmm_energy_unit_kj_per_mol`` (1 for reduced targets, R T for
    :class:`~idem_md.bridges.openmm.OpenMMEnergy`). Time step in ps, friction in 1/ps.
    2D targets run as 3D Systems whose padded axes feel no force and are not returned.
    """

    name = "openmm"

    def __init__(self, energy: Energy, config: MDConfig, x0: np.ndarray):
        import openmm
        from openmm import unit

        if x0.shape[0] != 1:
            raise ValueError(f'config.n_chains must be 1 for engine="openmm", got {x0.shape[0]} (use engine="torch")')
        super().__init__(energy, config, x0)
        self.openmm, self.unit = openmm, unit
        try:
            system = energy.to_openmm_system()
        except NotImplementedError as exc:
            raise NotImplementedError(f"run_md with engine='openmm' needs an OpenMM System: {exc}") from exc
        if system.getNumParticles() != self.n:
            raise ValueError(f"energy.to_openmm_system() returned {system.getNumParticles()} particles, expected {self.n}")
        self.scale = float(energy.openmm_energy_unit_kj_per_mol)  # kJ/mol per energy unit
        seeds = engine_seeds(config.seed)
        self.velocity_seed = int(seeds[1])
        self.integrator = openmm.LangevinMiddleIntegrator(
            self.temperature * unit.kelvin, config.friction / unit.picosecond, config.timestep * unit.picoseconds
        )
        self.integrator.setRandomNumberSeed(int(seeds[0]))  # 0 would mean "pick at random"
        self.platform_name = _resolve_platform_name(config.platform, self.n)
        platform = openmm.Platform.getPlatformByName(self.platform_name)
        self.context = openmm.Context(system, self.integrator, platform, dict(config.platform_properties))
        self._write(x0)

    def _to_openmm(self, x: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, 3) nm, padding missing axes with zeros."""
        out = np.zeros((self.n, 3))
        out[:, : self.d] = x
        return out

    def _write(self, x: np.ndarray) -> None:
        self.context.setPositions(self._to_openmm(x.reshape(self.n, self.d)))

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        state = self.context.getState(getPositions=True, getEnergy=True)
        e = state.getPotentialEnergy().value_in_unit(self.unit.kilojoule_per_mole) / self.scale
        x = np.asarray(state.getPositions(asNumpy=True).value_in_unit(self.unit.nanometer))[:, : self.d]
        return x[None], np.array([e])

    def _energy_forces(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._write(x)
        state = self.context.getState(getEnergy=True, getForces=True)
        e = state.getPotentialEnergy().value_in_unit(self.unit.kilojoule_per_mole) / self.scale
        f = state.getForces(asNumpy=True).value_in_unit(self.unit.kilojoule_per_mole / self.unit.nanometer)
        return np.array([e]), (np.asarray(f)[:, : self.d] / self.scale)[None]

    def _advance(self, k: int) -> None:
        self.integrator.step(k)

    def thermalize(self) -> None:
        self.context.setVelocitiesToTemperature(self.temperature * self.unit.kelvin, self.velocity_seed)

    def metadata(self) -> dict[str, Any]:
        return {"openmm_version": self.openmm.__version__}


def _resolve_platform_name(platform: str | None, n_particles: int) -> str:
    import openmm

    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if platform is None:
        if n_particles <= REFERENCE_PLATFORM_MAX_PARTICLES or "CPU" not in names:
            return "Reference"
        return "CPU"
    if platform not in names:
        raise ValueError(f"config.platform must be None or one of the available OpenMM platforms {names}, got {platform!r}")
    return platform


# ------------------------------------------------------------------ choice
def make_engine(energy: Energy, config: MDConfig, x0: Any) -> MDEngine:
    """The engine ``config.engine`` names at ``x0`` ``(C, n, d)``; ``"auto"``: ``energy.default_md_engine``,
    or ``"torch"`` when ``config.n_chains > 1``."""
    from .integrators import ASELangevinEngine, TorchLangevinEngine

    engines = {"openmm": OpenMMEngine, "torch": TorchLangevinEngine, "ase": ASELangevinEngine}
    name = energy.default_md_engine if config.engine == "auto" else config.engine
    if config.engine == "auto" and config.n_chains > 1:
        name = "torch"  # the only engine that batches chains
    if name not in engines:
        raise ValueError(f"{type(energy).__name__}.default_md_engine must be one of {sorted(engines)}, got {name!r}")
    return engines[name](energy, config, np.asarray(x0, dtype=np.float64))


def engine_seeds(seed: int) -> np.ndarray:
    """Three seeds from ``MDConfig.seed``: the integrator's noise, the velocities, the start."""
    return np.random.default_rng(seed).integers(1, 2**31 - 1, size=3)


def to_numpy(x: torch.Tensor) -> np.ndarray:
    """A tensor as a float64 numpy array on the CPU."""
    return x.detach().to("cpu", torch.float64).numpy()
