"""Molecular-dynamics baselines for any idem_md target: Langevin dynamics with autocorrelation-based thinning.

:func:`run_md` samples the Boltzmann density of a target with the engine its
``default_md_engine`` names (or ``MDConfig.engine``): OpenMM's
``LangevinMiddleIntegrator`` on ``energy.to_openmm_system()`` (LJ-n, DW-n, a user's
pair potential, :class:`~idem_md.bridges.openmm.OpenMMEnergy` with its own System),
ASE's ``Langevin`` for :class:`~idem_md.bridges.ase.ASEEnergy`, or a batched torch
BAOAB integrator over ``energy_and_forces`` for any other
:class:`~idem_md.energies.base.Energy`. :func:`run_md_with_budget` does the same under
a fixed number of force evaluations, for budget-matched comparisons with iDEM. A run
that blows up (non-finite or runaway energies or positions) stops with
:class:`MDBlowUpError`.

Units are the target's own: reduced targets in reduced time (one reduced length = 1 nm,
one reduced energy = 1 kJ/mol and 1 amu in the OpenMM mapping, so one reduced time
unit is 1 ps), OpenMM and ASE targets in ps. 2D targets (DW-4) run in OpenMM in 3D with
a free, decoupled z that no analysis sees: returned positions drop it.

Modules: :mod:`~idem_md.md.config` (settings, result), :mod:`~idem_md.md.engine`
(shared loop, OpenMM), :mod:`~idem_md.md.integrators` (torch BAOAB, ASE),
:mod:`~idem_md.md.run` (phases), :mod:`~idem_md.md.autocorrelation` (thinning).

>>> from idem_md.md import MDConfig
>>> MDConfig(thinning=100).engine
'auto'
"""

from .autocorrelation import integrated_autocorrelation_time, observable_series
from .config import ENGINES, OBSERVABLES, MDBlowUpError, MDConfig, MDRun
from .run import default_initial_positions, run_md, run_md_with_budget

__all__ = [
    "ENGINES",
    "OBSERVABLES",
    "MDBlowUpError",
    "MDConfig",
    "MDRun",
    "default_initial_positions",
    "integrated_autocorrelation_time",
    "observable_series",
    "run_md",
    "run_md_with_budget",
]
