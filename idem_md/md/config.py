"""MD settings and results: :class:`MDConfig`, :class:`MDRun`, :class:`MDBlowUpError`.

Units are the target's own (``energy.length_unit``, ``energy.energy_unit``): reduced
targets use reduced time (one reduced length, one reduced energy and a unit mass give
one reduced time unit, which the OpenMM mapping makes 1 ps); targets in physical units
(:class:`~idem_md.bridges.openmm.OpenMMEnergy`, :class:`~idem_md.bridges.ase.ASEEnergy`)
use ps and 1/ps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["ENGINES", "OBSERVABLES", "MDBlowUpError", "MDConfig", "MDRun", "check_int"]

#: Scalar observables whose autocorrelation can set the thinning (:func:`~idem_md.md.observable_series`).
OBSERVABLES: tuple[str, ...] = ("energy", "radius_of_gyration", "mean_pair_distance")
#: MD engines: ``"auto"`` asks the energy (:attr:`~idem_md.energies.base.Energy.default_md_engine`).
ENGINES: tuple[str, ...] = ("auto", "openmm", "torch", "ase")


class MDBlowUpError(FloatingPointError):
    """An MD run left the physical range (non-finite or runaway energies or positions)."""


@dataclass
class MDConfig:
    """Settings of a Langevin MD run (time in the target's time unit: reduced, or ps; friction in its inverse).

    Parameters
    ----------
    timestep : float
        Integrator time step. 0.005 (reduced time = ps in the OpenMM mapping) is stable
        for LJ-13, LJ-55 and DW-4 at kT = 1, with no configurational bias above sampling
        error on LJ-13 (0.005 vs 0.0025) or DW-4 (vs Metropolis); see
        docs/md_baselines.md. A molecule with unconstrained hydrogens needs about
        0.0005 ps (0.5 fs).
    friction : float
        Langevin friction coefficient, in inverse time units (1/ps).
    n_samples : int
        Samples collected by :func:`~idem_md.md.run_md` when its ``n_samples`` is None.
    n_equilibration_steps : int
        Steps discarded after minimisation, before the pilot run.
    thinning : int or "auto"
        Integrator steps between kept samples. ``"auto"``: the integrated
        autocorrelation time measured on a pilot run of ``n_pilot_steps`` steps
        (in steps; the largest over ``thinning_observables``), times
        ``thinning_factor``, rounded up.
    thinning_factor : float
        Multiplier of the slowest measured autocorrelation time for
        ``thinning="auto"``; 2 makes successive samples nearly uncorrelated.
    thinning_observables : tuple of str
        Observables of :func:`~idem_md.md.observable_series` measured in the pilot run; the
        slowest sets the thinning. Default: all of :data:`OBSERVABLES` (energy,
        radius of gyration, mean pair distance). ``("energy",)`` alone is not
        enough for DW-4, whose structure (which pairs sit in which well)
        decorrelates 10-20x more slowly than its energy (docs/md_baselines.md).
    n_pilot_steps : int
        Length of the pilot run for ``thinning="auto"`` (ignored otherwise).
    report_interval : int
        Steps between readings of the observables in the pilot run; the
        autocorrelation time is resolved to this many steps.
    window_c : float
        Constant ``c`` of Sokal's automatic window (see
        :func:`~idem_md.md.integrated_autocorrelation_time`).
    minimize : bool
        Minimise the energy (L-BFGS) from the initial positions before dynamics.
    max_minimization_evaluations : int
        Cap on configurations evaluated by the minimiser.
    seed : int
        Seeds the initial positions, the initial velocities and the integrator's
        random numbers.
    engine : str
        ``"auto"`` (the energy's :attr:`~idem_md.energies.base.Energy.default_md_engine`:
        OpenMM for targets with an OpenMM System, ASE for ASE targets, torch otherwise),
        ``"openmm"`` (``LangevinMiddleIntegrator`` on ``energy.to_openmm_system()``),
        ``"ase"`` (ASE's ``Langevin`` on ``energy.to_ase_atoms`` / ``to_ase_calculator``)
        or ``"torch"`` (batched BAOAB Langevin over ``energy.energy_and_forces``, unit masses).
    n_chains : int
        Independent chains run side by side by the torch engine (``engine="auto"`` picks it
        when ``n_chains > 1``; the others refuse): each frame gives ``n_chains`` samples and
        each step costs ``n_chains`` evaluations.
    max_energy_rise_per_dof : float
        Blow-up bound: the run stops with :class:`MDBlowUpError` when an energy exceeds
        the lowest energy seen by this many kT per degree of freedom (an equilibrium run
        stays near 0.5), or when energies or positions are not finite, or positions
        spread beyond 1000 times the starting extent.
    platform : str, optional
        OpenMM platform name; None picks ``"Reference"`` for systems of up to 256
        particles (fastest for these small custom-force systems, and bitwise
        reproducible) and ``"CPU"`` above, when available.
    platform_properties : dict
        Passed to the :class:`openmm.Context` (for example ``{"Threads": "1"}``).
    """

    timestep: float = 0.005
    friction: float = 1.0
    n_samples: int = 1000
    n_equilibration_steps: int = 10_000
    thinning: int | str = "auto"
    thinning_factor: float = 2.0
    thinning_observables: tuple[str, ...] = OBSERVABLES
    n_pilot_steps: int = 20_000
    report_interval: int = 10
    window_c: float = 5.0
    minimize: bool = True
    max_minimization_evaluations: int = 1000
    seed: int = 0
    engine: str = "auto"
    n_chains: int = 1
    max_energy_rise_per_dof: float = 100.0
    platform: str | None = None
    platform_properties: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("timestep", "friction", "thinning_factor", "window_c", "max_energy_rise_per_dof"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite positive float, got {value!r}")
        for name in ("n_samples", "report_interval", "n_chains"):
            check_int(getattr(self, name), name, minimum=1)
        for name in ("n_equilibration_steps", "n_pilot_steps", "max_minimization_evaluations", "seed"):
            check_int(getattr(self, name), name, minimum=0)
        if self.thinning != "auto":
            check_int(self.thinning, "thinning", minimum=1, extra='or "auto"')
        elif self.n_pilot_steps < 10 * self.report_interval:
            raise ValueError(
                f"n_pilot_steps must be at least 10 * report_interval = {10 * self.report_interval} "
                f'for thinning="auto", got {self.n_pilot_steps}'
            )
        if isinstance(self.thinning_observables, str):
            self.thinning_observables = (self.thinning_observables,)
        self.thinning_observables = tuple(self.thinning_observables)
        bad = [o for o in self.thinning_observables if o not in OBSERVABLES]
        if bad or not self.thinning_observables:
            raise ValueError(f"thinning_observables must be a non-empty tuple of {OBSERVABLES}, got {self.thinning_observables!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.platform is not None and not isinstance(self.platform, str):
            raise TypeError(f"platform must be None or an OpenMM platform name, got {type(self.platform).__name__}")
        if not isinstance(self.platform_properties, dict):
            raise TypeError(f"platform_properties must be a dict of str, got {type(self.platform_properties).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy (for JSON metadata)."""
        return asdict(self)


def check_int(value: Any, name: str, minimum: int, extra: str = "") -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}{' ' + extra if extra else ''}, got {value!r}")


# ------------------------------------------------------------------ result
@dataclass
class MDRun:
    """Samples and accounting of one MD run.

    Attributes
    ----------
    positions : torch.Tensor
        ``(N, n_particles, spatial_dim)`` float32 in the energy's length unit, centre
        of mass removed for translation-invariant targets (2D systems without the
        simulated z of the OpenMM engine).
    energies : torch.Tensor
        ``(N,)`` float64 potential energies in the energy's unit (kJ/mol == reduced
        energy for the built-in benchmarks; kT for OpenMM and ASE targets).
    n_energy_evaluations : int
        Configurations whose forces were evaluated: integrator steps (equilibration,
        pilot and sampling) times chains, plus energy-minimiser evaluations.
    thinning : int
        Integrator steps between samples (of one chain).
    autocorrelation_time : float
        Integrated autocorrelation time of the slowest thinning observable, in
        integrator steps: from the pilot run for ``thinning="auto"``, otherwise from the
        samples (NaN when there are too few samples to estimate it).
    wall_time : float
        Seconds from engine construction to the last sample.
    config : MDConfig
        The settings used.
    metadata : dict
        Engine, platform, temperature, step and evaluation breakdown, energy identity,
        and diagnostics (see :func:`~idem_md.md.run_md`).
    """

    positions: torch.Tensor
    energies: torch.Tensor
    n_energy_evaluations: int
    thinning: int
    autocorrelation_time: float
    wall_time: float
    config: MDConfig
    metadata: dict[str, Any]

    @property
    def n_samples(self) -> int:
        return int(self.positions.shape[0])

    def to_samples(self):
        """These samples as an :class:`idem_md.io.Samples` (positions, energies, metadata)."""
        from ..io import Samples  # io pulls optional writers; import only when asked

        meta = dict(self.metadata)
        meta.update(
            system=self.metadata["energy"]["name"],
            source="md",
            energy_evaluations=self.n_energy_evaluations,
            n_energy_evaluations=self.n_energy_evaluations,
            thinning=self.thinning,
            autocorrelation_time=self.autocorrelation_time,
            wall_time=self.wall_time,
            md_config=self.config.to_dict(),
        )
        return Samples(positions=self.positions, energies=self.energies, metadata=meta)
