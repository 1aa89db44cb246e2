"""The MD run: start, minimise, thermalise, equilibrate, pilot (thinning), collect.

:func:`run_md` and :func:`run_md_with_budget` drive any engine of
:mod:`idem_md.md.engine` / :mod:`idem_md.md.integrators` the same way.

Evaluation accounting (:attr:`MDRun.n_energy_evaluations`): one per integrator step
and chain (``LangevinMiddleIntegrator``, ASE's ``Langevin`` and BAOAB compute the
forces once per step) plus one per configuration evaluated by the energy minimiser,
which is driven from Python so that every call is counted exactly (the torch engine
adds the force evaluations after each minimisation or restart,
``metadata["n_setup_evaluations"]``). Energies read at recorded frames are *not*
counted there: an MD engine gets them with the force evaluation of that step; they
are counted separately as ``metadata["n_energy_queries"]``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..energies.base import Energy
from .autocorrelation import RELIABLE_LENGTH_IN_TAU, observable_series, sokal_tau
from .config import MDConfig, MDRun, check_int
from .engine import MDEngine, engine_seeds, make_engine

__all__ = ["BurnIn", "default_initial_positions", "run_md", "run_md_with_budget"]

#: Fewer kept samples (per chain) than this: no autocorrelation estimate over the samples.
MIN_SAMPLES_FOR_TAU = 20
#: Steps per progress-bar update in the equilibration phase.
PROGRESS_CHUNK = 1000


@dataclass
class BurnIn:
    """What thermalisation, equilibration and the pilot run decided.

    Attributes
    ----------
    thinning : int
        Steps between kept samples.
    autocorrelation_time : float
        Slowest pilot autocorrelation time in steps (NaN without a pilot).
    n_pilot_steps : int
        Steps spent in the pilot run.
    pilot_taus : dict
        Observable name -> pilot autocorrelation time in steps.
    """

    thinning: int
    autocorrelation_time: float = math.nan
    n_pilot_steps: int = 0
    pilot_taus: dict[str, float] = field(default_factory=dict)


def default_initial_positions(energy: Energy, seed: int = 0) -> torch.Tensor:
    """The energy's starting configuration for MD, ``(n_particles, spatial_dim)`` float64.

    Delegates to :meth:`~idem_md.energies.base.Energy.initial_configuration` (LJ-n: a
    jittered fcc cluster; DW-n and the default: random sequential placement) and checks
    its shape.
    """
    x = torch.as_tensor(energy.initial_configuration(seed), dtype=torch.float64)
    n, d = energy.n_particles, energy.spatial_dim
    if x.numel() != n * d:
        raise ValueError(f"{type(energy).__name__}.initial_configuration() must return shape ({n}, {d}), "
                         f"got {tuple(x.shape)}")
    return x.reshape(n, d)


def _check_energy(energy: Any) -> Energy:
    if not isinstance(energy, Energy):
        raise TypeError(f"energy must be an idem_md Energy, got {type(energy).__name__}")
    if not (math.isfinite(energy.kT) and energy.kT > 0):
        raise ValueError(f"energy.kT must be a finite positive float, got {energy.kT!r}")
    return energy


def _check_config(config: Any) -> MDConfig:
    if config is None:
        return MDConfig()
    if not isinstance(config, MDConfig):
        raise TypeError(f"config must be an MDConfig or None, got {type(config).__name__}")
    config.__post_init__()  # re-validate: fields may have been edited after construction
    return config


def _start(energy: Energy, config: MDConfig, initial_positions: Any) -> np.ndarray:
    """Starting positions ``(C, n, d)``: the given ones (``(n, d)``, flat, or ``(C, n, d)``) or the energy's."""
    n, d, c = energy.n_particles, energy.spatial_dim, config.n_chains
    if initial_positions is None:  # chain i starts from the energy's configuration for seed + i
        seed = int(engine_seeds(config.seed)[2])
        return np.stack([default_initial_positions(energy, seed=seed + i).numpy() for i in range(c)])
    x = initial_positions
    arr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if arr.shape in ((n, d), (n * d,)):
        arr = np.repeat(arr.reshape(1, n, d), c, axis=0)
    elif arr.shape != (c, n, d):
        raise ValueError(f"initial_positions must have shape ({n}, {d}), ({n * d},) or (n_chains={c}, {n}, {d}), "
                         f"got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("initial_positions contains NaN or infinite values")
    return arr


class _Progress:
    """One tqdm bar over integrator steps, across phases (disabled when ``enabled`` is False)."""

    def __init__(self, enabled: bool, name: str, total: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=f"MD {name}", unit="step", disable=not enabled, leave=False)

    def run(self, engine: MDEngine, n_steps: int, phase: str) -> None:
        self.bar.set_postfix_str(phase, refresh=False)
        while n_steps > 0:
            k = min(n_steps, PROGRESS_CHUNK)
            engine.step(k)
            self.bar.update(k)
            n_steps -= k

    def close(self) -> None:
        self.bar.close()


# ------------------------------------------------------------------ runs
def run_md(
    energy: Energy,
    n_samples: int | None = None,
    config: MDConfig | None = None,
    initial_positions: Any = None,
    progress: bool = True,
) -> MDRun:
    """Sample ``exp(-E/kT)`` of any target with Langevin dynamics.

    Phases: energy minimisation (``config.minimize``), velocities drawn at the
    temperature of ``energy.kT``, ``n_equilibration_steps`` discarded steps, a
    pilot run measuring integrated autocorrelation times (for ``thinning="auto"``),
    then ``n_samples`` samples ``thinning`` steps apart. The engine is
    ``config.engine`` (``"auto"``: ``energy.default_md_engine``): OpenMM for targets
    with an OpenMM System (LJ-n, DW-n, :class:`~idem_md.bridges.openmm.OpenMMEnergy`
    with its own System), ASE's Langevin for
    :class:`~idem_md.bridges.ase.ASEEnergy`, batched torch BAOAB for any other
    :class:`~idem_md.energies.base.Energy`.

    Parameters
    ----------
    energy : Energy
        Any target; translation-invariant ones are returned centred.
    n_samples : int, optional
        Samples to collect (>= 1); None uses ``config.n_samples``.
    config : MDConfig, optional
        Defaults to ``MDConfig()``.
    initial_positions : array_like, optional
        ``(n_particles, spatial_dim)``, flat, or ``(n_chains, n, d)``, in the energy's
        length unit; default :func:`default_initial_positions`.
    progress : bool
        Show a tqdm bar over the integrator steps of every phase.

    Returns
    -------
    MDRun
        ``metadata`` holds: ``energy`` (identity), ``engine``, ``platform``,
        ``temperature_K``, ``n_steps`` and its split (``n_equilibration_steps``,
        ``n_pilot_steps``, ``n_sampling_steps``), ``n_minimization_evaluations``,
        ``n_energy_queries``, ``minimized_energy``, ``pilot_autocorrelation_steps``
        (per observable, in steps), ``sample_autocorrelation`` (per observable, over
        the kept samples, in samples: about 1 when thinning is adequate), ``seed`` and
        the engine's version.

    Raises
    ------
    MDBlowUpError
        (a ``FloatingPointError``) when energies or positions become non-finite or run
        away (see ``MDConfig.max_energy_rise_per_dof``).
    ValueError
        For ``n_samples < 1`` or a bad config / initial_positions.
    """
    energy = _check_energy(energy)
    config = _check_config(config)
    n_samples = config.n_samples if n_samples is None else n_samples
    check_int(n_samples, "n_samples", minimum=1)
    t0 = time.perf_counter()
    engine = make_engine(energy, config, _start(energy, config, initial_positions))
    minimized = engine.minimize(config.max_minimization_evaluations) if config.minimize else math.nan
    n_frames = math.ceil(n_samples / engine.n_chains)
    fixed = config.thinning if config.thinning != "auto" else 0
    bar = _Progress(progress, energy.name, config.n_equilibration_steps + _pilot_steps(config) + n_frames * fixed)
    try:
        burn_in = _burn_in(engine, config, bar)
        bar.bar.total += n_frames * (burn_in.thinning - fixed)
        return _collect(engine, n_samples, burn_in, minimized, t0, bar)
    finally:
        bar.close()


def run_md_with_budget(
    energy: Energy,
    n_energy_evaluations: int,
    config: MDConfig | None = None,
    initial_positions: Any = None,
    progress: bool = True,
) -> MDRun:
    """Like :func:`run_md`, spending at most ``n_energy_evaluations`` force evaluations.

    Minimisation (at most ``config.max_minimization_evaluations`` evaluations, fewer if
    the budget is tight), equilibration and the pilot run are paid from the
    budget; what remains buys ``remaining // (thinning * n_chains)`` frames of
    ``n_chains`` samples. The returned :attr:`MDRun.n_energy_evaluations` never
    exceeds the budget.

    Parameters
    ----------
    energy : Energy
        Any target (as in :func:`run_md`).
    n_energy_evaluations : int
        The budget of force evaluations, >= 1.
    config, initial_positions, progress
        As in :func:`run_md` (``config.n_samples`` is ignored).

    Raises
    ------
    ValueError
        If the budget cannot pay for equilibration, the pilot run and at least
        one sample (reduce ``n_equilibration_steps`` / ``n_pilot_steps``).
    """
    energy = _check_energy(energy)
    config = _check_config(config)
    budget = n_energy_evaluations
    check_int(budget, "n_energy_evaluations", minimum=1)
    c = config.n_chains
    fixed = (config.n_equilibration_steps + _pilot_steps(config)) * c
    one_frame = (1 if config.thinning == "auto" else int(config.thinning)) * c
    spare = budget - fixed - one_frame - c  # c: the torch engine's first force evaluation
    if spare < 0:
        raise ValueError(
            f"n_energy_evaluations={budget} cannot pay for {config.n_equilibration_steps} equilibration steps, "
            f"{_pilot_steps(config)} pilot steps and one sample (x {c} chains); "
            "raise the budget or reduce config.n_equilibration_steps / config.n_pilot_steps"
        )
    t0 = time.perf_counter()
    engine = make_engine(energy, config, _start(energy, config, initial_positions))
    max_min = min(config.max_minimization_evaluations, spare) if config.minimize else 0
    minimized = engine.minimize(max_min) if max_min > 0 else math.nan
    bar = _Progress(progress, energy.name, config.n_equilibration_steps + _pilot_steps(config))
    try:
        burn_in = _burn_in(engine, config, bar)
        n_frames = (budget - engine.n_force_evaluations) // (burn_in.thinning * c)
        if n_frames < 1:
            raise ValueError(
                f"n_energy_evaluations={budget}: after {engine.n_force_evaluations} evaluations of burn-in, "
                f"the measured thinning of {burn_in.thinning} steps leaves no budget for a sample"
            )
        bar.bar.total += n_frames * burn_in.thinning
        run = _collect(engine, n_frames * c, burn_in, minimized, t0, bar)
    finally:
        bar.close()
    run.metadata["budget"] = budget
    return run


def _pilot_steps(config: MDConfig) -> int:
    return (config.n_pilot_steps // config.report_interval) * config.report_interval if config.thinning == "auto" else 0


def _burn_in(engine: MDEngine, config: MDConfig, bar: _Progress) -> BurnIn:
    """Thermalise, equilibrate and (for thinning="auto") run the pilot; the slowest
    observable's autocorrelation time (mean over chains) sets the thinning."""
    engine.thermalize()
    bar.run(engine, config.n_equilibration_steps, "equilibration")
    if config.thinning != "auto":
        return BurnIn(int(config.thinning))
    k = config.report_interval
    n_reports = config.n_pilot_steps // k
    positions = np.empty((n_reports, engine.n_chains, engine.n, engine.d))
    energies = np.empty((n_reports, engine.n_chains))
    for i in range(n_reports):
        bar.run(engine, k, "pilot")
        positions[i], energies[i] = engine.frame()
    taus = {name: tau * k for name, tau in _chain_taus(positions, energies, config).items()}  # steps
    if not taus:
        raise ValueError(f"every thinning observable {config.thinning_observables} was constant in the pilot run")
    name, tau = max(taus.items(), key=lambda item: item[1])
    if n_reports * k < RELIABLE_LENGTH_IN_TAU * tau:
        warnings.warn(
            f"MD pilot run of {n_reports * k} steps is short for an autocorrelation time of {tau:.3g} steps "
            f"({name}; want >= {RELIABLE_LENGTH_IN_TAU} tau); raise MDConfig.n_pilot_steps",
            RuntimeWarning,
            stacklevel=3,
        )
    return BurnIn(max(1, math.ceil(config.thinning_factor * tau)), tau, n_reports * k, taus)


def _chain_taus(positions: np.ndarray, energies: np.ndarray, config: MDConfig) -> dict[str, float]:
    """Autocorrelation time (in frames) of each thinning observable, averaged over chains;
    positions ``(T, C, n, d)``, energies ``(T, C)``. Constant series are left out."""
    out: dict[str, list[float]] = {}
    names = config.thinning_observables if positions.shape[2] > 1 else ("energy",)  # one particle: no structure
    for c in range(energies.shape[1]):
        for name, x in observable_series(positions[:, c], energies[:, c], names).items():
            if np.ptp(x) > 0:
                out.setdefault(name, []).append(sokal_tau(x, config.window_c)[0])
    return {name: float(np.mean(v)) for name, v in out.items()}


def _collect(engine: MDEngine, n_samples: int, burn_in: BurnIn, minimized: float, t0: float,
             bar: _Progress) -> MDRun:
    c, n, d = engine.n_chains, engine.n, engine.d
    n_frames = math.ceil(n_samples / c)
    positions = np.empty((n_frames, c, n, d))
    energies = np.empty((n_frames, c))
    steps_before = engine.n_steps
    for i in range(n_frames):
        bar.run(engine, burn_in.thinning, "sampling")
        positions[i], energies[i] = engine.frame()
    wall = time.perf_counter() - t0
    if engine.shift_invariant:
        positions -= positions.mean(axis=2, keepdims=True)  # equal weights: centroid (= centre of mass for 1 amu)
    config = engine.config
    sample_taus = _chain_taus(positions, energies, config) if n_frames >= MIN_SAMPLES_FOR_TAU else {}
    tau = burn_in.autocorrelation_time
    if math.isnan(tau) and sample_taus:
        tau = max(sample_taus.values()) * burn_in.thinning  # fixed thinning: what the samples show, in steps
    metadata = {
        "energy": engine.energy.identity(),
        "engine": engine.name,
        "platform": engine.platform_name,
        "temperature_K": engine.temperature,
        "kT": engine.energy.kT,
        "length_unit": engine.energy.length_unit,
        "energy_unit": engine.energy.energy_unit,
        "timestep": config.timestep,
        "friction": config.friction,
        "seed": config.seed,
        "n_chains": c,
        "n_steps": engine.n_steps,
        "n_equilibration_steps": config.n_equilibration_steps,
        "n_pilot_steps": burn_in.n_pilot_steps,
        "n_sampling_steps": engine.n_steps - steps_before,
        "n_minimization_evaluations": engine.n_minimization_evaluations,
        "n_energy_queries": engine.n_energy_queries,
        "n_state_checks": engine.n_state_checks,
        "minimized_energy": minimized,
        "pilot_autocorrelation_steps": burn_in.pilot_taus,
        "sample_autocorrelation": sample_taus,
        **engine.metadata(),
    }
    return MDRun(
        positions=torch.as_tensor(positions.reshape(n_frames * c, n, d)[:n_samples], dtype=torch.float32),
        energies=torch.as_tensor(energies.reshape(-1)[:n_samples], dtype=torch.float64),
        n_energy_evaluations=engine.n_force_evaluations,
        thinning=burn_in.thinning,
        autocorrelation_time=float(tau),
        wall_time=wall,
        config=config,
        metadata=metadata,
    )
