"""Molecular-dynamics baselines: Langevin dynamics in OpenMM on an idem_md target.

:func:`run_md` samples the Boltzmann density of a particle target (LJ-n, DW-n)
with OpenMM's ``LangevinMiddleIntegrator`` on the System from
``energy.to_openmm_system()``; :func:`run_md_with_budget` does the same under a
fixed number of force evaluations, for budget-matched comparisons with iDEM.

Units follow the OpenMM bridge: one reduced length is one nm, one reduced energy
one kJ/mol and every particle weighs 1 amu, so one reduced time unit is one ps.
Time steps are in ps (= reduced time), friction in 1/ps, and the thermostat runs
at :func:`idem_md.units.temperature_for_reduced_kT` of the energy's ``kT``.
2D targets (DW-4) are simulated in 3D with a free, decoupled z that no analysis
sees: returned positions drop it.

Evaluation accounting (:attr:`MDRun.n_energy_evaluations`): one per integrator
step (``LangevinMiddleIntegrator`` computes the forces once per step) plus one
per call of the energy minimiser, which is driven from Python so that every call
is counted exactly. Energies read at recorded frames (pilot series and samples)
are *not* counted there: an MD engine gets them with the force evaluation of that
step (OpenMM merely exposes them through a separate ``getState`` call); they are
counted separately as ``metadata["n_energy_queries"]``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from .energies.base import Energy
from .units import temperature_for_reduced_kT

__all__ = [
    "OBSERVABLES",
    "MDConfig",
    "MDRun",
    "default_initial_positions",
    "integrated_autocorrelation_time",
    "observable_series",
    "run_md",
    "run_md_with_budget",
]

#: Scalar observables whose autocorrelation can set the thinning (:func:`observable_series`).
OBSERVABLES: tuple[str, ...] = ("energy", "radius_of_gyration", "mean_pair_distance")

#: Up to this many particles the Reference platform is the default: for the
#: benchmark systems (4-55 particles, custom bond forces) it measured 3-70x
#: faster per step than the CPU platform on a 2-core machine (docs/md_baselines.md).
_REFERENCE_PLATFORM_MAX_PARTICLES = 256
#: A series shorter than this many autocorrelation times gives an unreliable
#: estimate (the threshold emcee uses).
_RELIABLE_LENGTH_IN_TAU = 50
#: Fewer kept samples than this: no autocorrelation estimate over the samples.
_MIN_SAMPLES_FOR_TAU = 20
#: Recentre a cluster that has diffused this far (reduced lengths) from the origin.
_RECENTRE_DISTANCE = 100.0
#: Integrator steps per ``step`` call, so that long phases stay interruptible.
_STEP_CHUNK = 10_000


# ------------------------------------------------------------------ config
@dataclass
class MDConfig:
    """Settings of a Langevin MD run (reduced units: time in ps, friction in 1/ps).

    Parameters
    ----------
    timestep : float
        Integrator time step in reduced time (ps). 0.005 is stable for LJ-13,
        LJ-55 and DW-4 at kT = 1, with no configurational bias above sampling
        error on LJ-13 (0.005 vs 0.0025) or DW-4 (vs Metropolis); see
        docs/md_baselines.md.
    friction : float
        Langevin friction coefficient in 1/ps.
    n_samples : int
        Samples collected by :func:`run_md` when its ``n_samples`` is None.
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
        Observables of :func:`observable_series` measured in the pilot run; the
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
        :func:`integrated_autocorrelation_time`).
    minimize : bool
        Minimise the energy (L-BFGS) from the initial positions before dynamics.
    max_minimization_evaluations : int
        Cap on energy-and-force evaluations spent by the minimiser.
    seed : int
        Seeds the initial positions, the initial velocities and the integrator's
        random numbers.
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
    platform: str | None = None
    platform_properties: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("timestep", "friction", "thinning_factor", "window_c"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite positive float, got {value!r}")
        for name in ("n_samples", "report_interval"):
            _check_int(getattr(self, name), name, minimum=1)
        for name in ("n_equilibration_steps", "n_pilot_steps", "max_minimization_evaluations", "seed"):
            _check_int(getattr(self, name), name, minimum=0)
        if self.thinning != "auto":
            _check_int(self.thinning, "thinning", minimum=1, extra='or "auto"')
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
        if self.platform is not None and not isinstance(self.platform, str):
            raise TypeError(f"platform must be None or an OpenMM platform name, got {type(self.platform).__name__}")
        if not isinstance(self.platform_properties, dict):
            raise TypeError(f"platform_properties must be a dict of str, got {type(self.platform_properties).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy (for JSON metadata)."""
        return asdict(self)


def _check_int(value: Any, name: str, minimum: int, extra: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}{' ' + extra if extra else ''}, got {value!r}")


# ------------------------------------------------------------------ result
@dataclass
class MDRun:
    """Samples and accounting of one MD run.

    Attributes
    ----------
    positions : torch.Tensor
        ``(N, n_particles, spatial_dim)`` float32, reduced lengths, centre of
        mass removed for particle systems (2D systems without the simulated z).
    energies : torch.Tensor
        ``(N,)`` float64 potential energies in reduced units, read from OpenMM
        (kJ/mol == reduced energy).
    n_energy_evaluations : int
        Force evaluations spent: integrator steps (equilibration, pilot and
        sampling) plus energy-minimiser evaluations.
    thinning : int
        Integrator steps between samples.
    autocorrelation_time : float
        Integrated autocorrelation time of the potential energy, in integrator
        steps: from the pilot run for ``thinning="auto"``, otherwise from the
        sample energies (NaN when there are too few samples to estimate it).
    wall_time : float
        Seconds from System construction to the last sample.
    config : MDConfig
        The settings used.
    metadata : dict
        Platform, OpenMM version, temperature, step and evaluation breakdown,
        energy identity, and diagnostics (see :func:`run_md`).
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
        from .io import Samples  # io pulls optional writers; import only when asked

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


# ------------------------------------------------------ autocorrelation
def integrated_autocorrelation_time(series: Any, c: float = 5.0) -> float:
    r"""Integrated autocorrelation time of a scalar time series, Sokal's automatic window.

    .. math::

        \tau(M) = 1 + 2 \sum_{t=1}^{M} \hat\rho(t),

    with :math:`\hat\rho` the normalised autocovariance (the biased, FFT-based
    estimator, which divides by the series length), and the window ``M`` the
    smallest one with ``M >= c * tau(M)`` (Sokal 1997; ``c = 5`` as in emcee).
    With this convention ``tau = 1`` for uncorrelated data, ``tau = (1 + phi) /
    (1 - phi)`` for an AR(1) process, and the effective sample size is
    ``len(series) / tau``.

    Parameters
    ----------
    series : array_like
        1D, finite, at least 4 values, not constant.
    c : float
        Window constant, > 0. Larger is less biased and noisier.

    Returns
    -------
    float
        ``tau`` in units of the series' spacing. When the series is shorter
        than ``50 * tau`` (emcee's reliability threshold) a :class:`RuntimeWarning`
        says so: the estimate is then biased low and noisy.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> round(integrated_autocorrelation_time(rng.normal(size=20000)), 1)
    1.0
    """
    tau, _ = _sokal_tau(series, c)
    n = np.size(series)
    if n < _RELIABLE_LENGTH_IN_TAU * tau:
        warnings.warn(
            f"integrated_autocorrelation_time: a series of length {n} is shorter than "
            f"{_RELIABLE_LENGTH_IN_TAU} tau = {_RELIABLE_LENGTH_IN_TAU * tau:.3g}; the estimate is unreliable",
            RuntimeWarning,
            stacklevel=2,
        )
    return tau


def _sokal_tau(series: Any, c: float) -> tuple[float, int]:
    """(tau, window M). With the biased autocovariance ``tau(M)`` falls to 0 at the
    last lag, so a window satisfying ``M >= c tau(M)`` always exists."""
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not c > 0:
        raise ValueError(f"c must be a positive float, got {c!r}")
    x = np.asarray(series, dtype=np.float64)
    if x.ndim != 1 or x.size < 4:
        raise ValueError(f"series must be 1D with at least 4 values, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("series contains NaN or infinite values")
    x = x - x.mean()
    var = float(np.mean(x * x))
    if var <= 0.0:
        raise ValueError("series is constant: its autocorrelation time is undefined")
    n = x.size
    n_fft = 1 << (2 * n - 1).bit_length()  # zero padding: a linear, not circular, correlation
    f = np.fft.rfft(x, n=n_fft)
    acov = np.fft.irfft(f * np.conj(f), n=n_fft)[:n] / n  # biased autocovariance
    rho = acov / var
    taus = 2.0 * np.cumsum(rho) - 1.0  # taus[M] = 1 + 2 sum_{t=1}^{M} rho(t)
    window = int(np.argmax(np.arange(n) >= c * taus))
    return float(taus[window]), window


# ------------------------------------------------------ initial positions
def default_initial_positions(energy: Energy, seed: int = 0) -> torch.Tensor:
    """A compact, overlap-free starting configuration, ``(n_particles, spatial_dim)`` float64.

    * LJ-n: the ``n`` sites of an fcc lattice (nearest-neighbour distance
      ``0.95 r_m``) closest to the origin, jittered by ``0.02 r_m``;
      minimum distance about ``0.9 r_m``.
    * DW-n: random sequential placement in a box of side ``d0 * n^(1/d)`` with
      minimum distance ``d0 / 2``.
    * Other particle energies: random sequential placement at reduced density
      about 0.6 with minimum distance 0.9.

    Parameters
    ----------
    energy : Energy
        A particle target.
    seed : int
        Seeds the jitter and placement.
    """
    from .energies.double_well import MultiDoubleWell
    from .energies.lennard_jones import LennardJonesCluster

    rng = np.random.default_rng(seed)
    n, d = energy.n_particles, energy.spatial_dim
    if isinstance(energy, LennardJonesCluster) and d == 3:
        sites = _fcc_cluster_sites(n) * (0.95 * energy.r_m)
        x = sites + rng.normal(scale=0.02 * energy.r_m, size=sites.shape)
    elif isinstance(energy, MultiDoubleWell):
        x = _random_sequential(rng, n, d, box=energy.d0 * n ** (1.0 / d), min_distance=energy.d0 / 2)
    else:
        x = _random_sequential(rng, n, d, box=(n / 0.6) ** (1.0 / d), min_distance=0.9)
    return torch.as_tensor(x - x.mean(0), dtype=torch.float64)


def _fcc_cluster_sites(n: int) -> np.ndarray:
    """The ``n`` fcc sites (unit nearest-neighbour distance) nearest the origin, ``(n, 3)``."""
    k = math.ceil((n / 4) ** (1 / 3)) + 2
    r = np.arange(-k, k + 1)
    grid = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    sites = grid[grid.sum(1) % 2 == 0] / math.sqrt(2.0)  # fcc: integer points with even sum
    order = np.lexsort((sites[:, 2], sites[:, 1], sites[:, 0], np.round((sites**2).sum(1), 9)))
    return sites[order[:n]].astype(np.float64)


def _random_sequential(rng: np.random.Generator, n: int, d: int, box: float, min_distance: float) -> np.ndarray:
    """Uniform points in ``[0, box]^d`` with pairwise distance >= min_distance (box grows if needed)."""
    points: list[np.ndarray] = []
    tries = 0
    while len(points) < n:
        p = rng.uniform(0.0, box, size=d)
        if all(np.linalg.norm(p - q) >= min_distance for q in points):
            points.append(p)
        tries += 1
        if tries > 1000 * n:  # too dense: restart in a larger box
            points, tries, box = [], 0, box * 1.2
    return np.array(points)


# --------------------------------------------------------------- engine
class _BudgetExhausted(Exception):
    pass


class _LangevinEngine:
    """One OpenMM Context with a LangevinMiddleIntegrator, counting force evaluations."""

    def __init__(self, energy: Energy, config: MDConfig, initial_positions: Any):
        import openmm
        from openmm import unit

        self.openmm, self.unit = openmm, unit
        self.energy, self.config = energy, config
        self.n, self.d = energy.n_particles, energy.spatial_dim
        system = _build_system(energy)
        if system.getNumParticles() != self.n:
            raise ValueError(
                f"energy.to_openmm_system() returned {system.getNumParticles()} particles, expected {self.n}"
            )
        self.temperature = temperature_for_reduced_kT(energy.kT)  # K
        seeds = np.random.default_rng(config.seed).integers(1, 2**31 - 1, size=3)
        self.velocity_seed = int(seeds[1])
        self.integrator = openmm.LangevinMiddleIntegrator(
            self.temperature * unit.kelvin, config.friction / unit.picosecond, config.timestep * unit.picoseconds
        )
        self.integrator.setRandomNumberSeed(int(seeds[0]))  # 0 would mean "pick at random"
        self.platform_name = _resolve_platform_name(config.platform, self.n)
        platform = openmm.Platform.getPlatformByName(self.platform_name)
        self.context = openmm.Context(system, self.integrator, platform, dict(config.platform_properties))
        if initial_positions is None:
            initial_positions = default_initial_positions(energy, seed=int(seeds[2]))
        self.context.setPositions(self._to_openmm(_check_positions(initial_positions, self.n, self.d)))
        self.n_steps = 0
        self.n_minimization_evaluations = 0
        self.n_energy_queries = 0
        self._steps_since_recentre_check = 0

    # ---------------------------------------------------------- helpers
    def _to_openmm(self, x: np.ndarray) -> np.ndarray:
        """(n, d) reduced -> (n, 3) nm, padding missing axes with zeros."""
        out = np.zeros((self.n, 3))
        out[:, : self.d] = x
        return out

    def _state(self, **kw):
        return self.context.getState(**kw)

    @property
    def n_force_evaluations(self) -> int:
        return self.n_steps + self.n_minimization_evaluations

    # ------------------------------------------------------------ phases
    def minimize(self, max_evaluations: int) -> float:
        """L-BFGS on the first ``d`` coordinates; every energy-and-force call counted. Returns the final energy."""
        from scipy.optimize import minimize

        unit = self.unit
        x0 = self._state(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        z = np.array(x0)  # (n, 3); the axes beyond d stay where they are
        best = {"e": math.inf, "x": x0[:, : self.d].ravel().copy()}

        def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
            if self.n_minimization_evaluations >= max_evaluations:
                raise _BudgetExhausted
            z[:, : self.d] = flat.reshape(self.n, self.d)
            self.context.setPositions(z)
            state = self._state(getEnergy=True, getForces=True)
            self.n_minimization_evaluations += 1
            e = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            f = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
            if e < best["e"]:
                best["e"], best["x"] = e, flat.copy()
            return e, -np.asarray(f)[:, : self.d].ravel()

        if max_evaluations > 0:
            try:
                minimize(fun, best["x"], jac=True, method="L-BFGS-B",
                         options={"maxfun": max_evaluations, "maxiter": max_evaluations, "gtol": 1e-6})
            except _BudgetExhausted:
                pass
        z[:, : self.d] = best["x"].reshape(self.n, self.d)
        self.context.setPositions(z)
        return best["e"]

    def thermalize(self) -> None:
        self.context.setVelocitiesToTemperature(self.temperature * self.unit.kelvin, self.velocity_seed)

    def step(self, n_steps: int) -> None:
        while n_steps > 0:
            k = min(n_steps, _STEP_CHUNK)
            self.integrator.step(k)
            self.n_steps += k
            n_steps -= k
            self._steps_since_recentre_check += k
            if self._steps_since_recentre_check >= _STEP_CHUNK:
                self._steps_since_recentre_check = 0
                self._recentre_if_drifted()

    def _recentre_if_drifted(self) -> None:
        """Shift the cluster back to the origin (and the free axes of a 2D system back to 0)
        once they have diffused far away, so that single-precision platforms keep
        resolving pair distances. Neither move changes the dynamics: the energy of a
        particle system is translation-invariant and the padded axes feel no force."""
        x = np.array(self._state(getPositions=True).getPositions(asNumpy=True).value_in_unit(self.unit.nanometer))
        if np.abs(x).max() < _RECENTRE_DISTANCE:
            return
        x[:, : self.d] -= x[:, : self.d].mean(axis=0)
        x[:, self.d:] = 0.0
        self.context.setPositions(x)

    def frame(self) -> tuple[np.ndarray, float]:
        """Current (n, d) positions (reduced) and potential energy (reduced)."""
        state = self._state(getPositions=True, getEnergy=True)
        self.n_energy_queries += 1
        e = state.getPotentialEnergy().value_in_unit(self.unit.kilojoule_per_mole)
        _check_finite_energy(e, self.n_steps)
        x = state.getPositions(asNumpy=True).value_in_unit(self.unit.nanometer)
        return np.asarray(x)[:, : self.d], e


def _check_finite_energy(e: float, step: int) -> None:
    if not math.isfinite(e):
        raise FloatingPointError(
            f"MD blew up: potential energy {e} after {step} steps; reduce MDConfig.timestep"
        )


def _build_system(energy: Energy):
    builder = getattr(energy, "to_openmm_system", None)
    if builder is None:
        raise NotImplementedError(f"energy {energy.name!r} ({type(energy).__name__}) has no to_openmm_system()")
    try:
        return builder()
    except NotImplementedError as exc:
        raise NotImplementedError(
            f"run_md needs an OpenMM System for energy {energy.name!r} ({type(energy).__name__}): {exc}"
        ) from exc


def _resolve_platform_name(platform: str | None, n_particles: int) -> str:
    import openmm

    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if platform is None:
        if n_particles <= _REFERENCE_PLATFORM_MAX_PARTICLES or "CPU" not in names:
            return "Reference"
        return "CPU"
    if platform not in names:
        raise ValueError(f"config.platform must be None or one of the available OpenMM platforms {names}, got {platform!r}")
    return platform


def _check_energy(energy: Any) -> Energy:
    if not isinstance(energy, Energy):
        raise TypeError(f"energy must be an idem_md Energy, got {type(energy).__name__}")
    if not energy.is_particle_system:
        raise NotImplementedError(
            f"MD baselines need a particle system (LJ-n, DW-n); energy {energy.name!r} "
            f"({type(energy).__name__}) is not one"
        )
    if not (math.isfinite(energy.kT) and energy.kT > 0):
        raise ValueError(f"energy.kT must be a finite positive float, got {energy.kT!r}")
    return energy


def _check_positions(x: Any, n: int, d: int) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if arr.shape not in ((n, d), (n * d,)):
        raise ValueError(f"initial_positions must have shape ({n}, {d}) or ({n * d},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("initial_positions contains NaN or infinite values")
    return arr.reshape(n, d)


# ------------------------------------------------------------------ runs
def run_md(
    energy: Energy,
    n_samples: int | None = None,
    config: MDConfig | None = None,
    initial_positions: Any = None,
    progress: bool = True,
) -> MDRun:
    """Sample ``exp(-E/kT)`` of a particle target with Langevin dynamics in OpenMM.

    Phases: energy minimisation (``config.minimize``), velocities drawn at the
    temperature of ``energy.kT``, ``n_equilibration_steps`` discarded steps, a
    pilot run measuring the energy's integrated autocorrelation time (for
    ``thinning="auto"``), then ``n_samples`` samples ``thinning`` steps apart.

    Parameters
    ----------
    energy : Energy
        A particle target with ``to_openmm_system()`` (LJ-n, DW-n).
    n_samples : int, optional
        Samples to collect (>= 1); None uses ``config.n_samples``.
    config : MDConfig, optional
        Defaults to ``MDConfig()``.
    initial_positions : array_like, optional
        ``(n_particles, spatial_dim)`` or flat, reduced lengths; default
        :func:`default_initial_positions`.
    progress : bool
        Show a tqdm bar over the samples.

    Returns
    -------
    MDRun
        ``metadata`` holds: ``energy`` (identity), ``platform``,
        ``openmm_version``, ``temperature_K``, ``n_steps`` and its split
        (``n_equilibration_steps``, ``n_pilot_steps``, ``n_sampling_steps``),
        ``n_minimization_evaluations``, ``n_energy_queries``,
        ``minimized_energy``, ``pilot_autocorrelation_steps`` (per observable,
        in steps), ``sample_autocorrelation`` (per observable, over the kept
        samples, in samples: about 1 when thinning is adequate) and ``seed``.

    Raises
    ------
    NotImplementedError
        For targets that are not particle systems (GMM-40) or have no OpenMM System.
    ValueError
        For ``n_samples < 1`` or a bad config / initial_positions.
    """
    energy = _check_energy(energy)
    config = _check_config(config)
    n_samples = config.n_samples if n_samples is None else n_samples
    _check_int(n_samples, "n_samples", minimum=1)
    t0 = time.perf_counter()
    engine = _LangevinEngine(energy, config, initial_positions)
    minimized = engine.minimize(config.max_minimization_evaluations) if config.minimize else math.nan
    return _collect(engine, n_samples, _burn_in(engine, config), minimized, t0, progress)


def run_md_with_budget(
    energy: Energy,
    n_energy_evaluations: int,
    config: MDConfig | None = None,
    initial_positions: Any = None,
    progress: bool = True,
) -> MDRun:
    """Like :func:`run_md`, spending at most ``n_energy_evaluations`` force evaluations.

    Minimisation (at most ``config.max_minimization_evaluations`` calls, fewer if
    the budget is tight), equilibration and the pilot run are paid from the
    budget; what remains buys ``remaining // thinning`` samples. The returned
    :attr:`MDRun.n_energy_evaluations` never exceeds the budget.

    Parameters
    ----------
    energy : Energy
        A particle target with ``to_openmm_system()``.
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
    _check_int(budget, "n_energy_evaluations", minimum=1)
    fixed = config.n_equilibration_steps + (config.n_pilot_steps if config.thinning == "auto" else 0)
    one_sample = 1 if config.thinning == "auto" else int(config.thinning)
    spare = budget - fixed - one_sample
    if spare < 0:
        raise ValueError(
            f"n_energy_evaluations={budget} cannot pay for {config.n_equilibration_steps} equilibration steps, "
            f"{fixed - config.n_equilibration_steps} pilot steps and one sample; "
            "raise the budget or reduce config.n_equilibration_steps / config.n_pilot_steps"
        )
    t0 = time.perf_counter()
    engine = _LangevinEngine(energy, config, initial_positions)
    max_min = min(config.max_minimization_evaluations, spare) if config.minimize else 0
    minimized = engine.minimize(max_min) if max_min > 0 else math.nan
    burn_in = _burn_in(engine, config)
    thinning = burn_in[0]
    n_samples = (budget - engine.n_force_evaluations) // thinning
    if n_samples < 1:
        raise ValueError(
            f"n_energy_evaluations={budget}: after {engine.n_force_evaluations} evaluations of burn-in, "
            f"the measured thinning of {thinning} steps leaves no budget for a sample"
        )
    run = _collect(engine, n_samples, burn_in, minimized, t0, progress)
    run.metadata["budget"] = budget
    return run


def _check_config(config: Any) -> MDConfig:
    if config is None:
        return MDConfig()
    if not isinstance(config, MDConfig):
        raise TypeError(f"config must be an MDConfig or None, got {type(config).__name__}")
    config.__post_init__()  # re-validate: fields may have been edited after construction
    return config


def _burn_in(engine: _LangevinEngine, config: MDConfig) -> tuple[int, float, int, dict[str, float]]:
    """Thermalise, equilibrate and (for thinning="auto") run the pilot.

    Returns (thinning in steps, autocorrelation time in steps -- the largest over
    ``config.thinning_observables``, NaN without a pilot --, pilot steps, and the
    pilot's autocorrelation time of each observable in steps)."""
    engine.thermalize()
    engine.step(config.n_equilibration_steps)
    if config.thinning != "auto":
        return int(config.thinning), math.nan, 0, {}
    k = config.report_interval
    n_reports = config.n_pilot_steps // k
    positions = np.empty((n_reports, engine.n, engine.d))
    energies = np.empty(n_reports)
    for i in range(n_reports):
        engine.step(k)
        positions[i], energies[i] = engine.frame()
    series = observable_series(positions, energies, config.thinning_observables)
    taus = {name: _sokal_tau(x, config.window_c)[0] * k for name, x in series.items()}  # steps
    name, tau = max(taus.items(), key=lambda item: item[1])
    if n_reports * k < _RELIABLE_LENGTH_IN_TAU * tau:
        warnings.warn(
            f"MD pilot run of {n_reports * k} steps is short for an autocorrelation time of {tau:.3g} steps "
            f"({name}; want >= {_RELIABLE_LENGTH_IN_TAU} tau); raise MDConfig.n_pilot_steps",
            RuntimeWarning,
            stacklevel=3,
        )
    thinning = max(1, math.ceil(config.thinning_factor * tau))
    return thinning, tau, n_reports * k, taus


def _collect(engine: _LangevinEngine, n_samples: int, burn_in: tuple[int, float, int, dict[str, float]],
             minimized: float, t0: float, progress: bool) -> MDRun:
    from tqdm.auto import tqdm

    thinning, tau, n_pilot, pilot_taus = burn_in
    n, d = engine.n, engine.d
    positions = np.empty((n_samples, n, d))
    energies = np.empty(n_samples)
    steps_before = engine.n_steps
    for i in tqdm(range(n_samples), desc=f"MD {engine.energy.name}", disable=not progress, leave=False):
        engine.step(thinning)
        positions[i], energies[i] = engine.frame()
    wall = time.perf_counter() - t0
    if engine.energy.is_particle_system:
        positions -= positions.mean(axis=1, keepdims=True)  # equal masses: centroid = centre of mass
    config = engine.config
    sample_taus = _sample_taus(positions, energies, config)
    if math.isnan(tau) and sample_taus:
        tau = max(sample_taus.values()) * thinning  # fixed thinning: what the samples show, in steps
    metadata = {
        "energy": engine.energy.identity(),
        "platform": engine.platform_name,
        "openmm_version": engine.openmm.__version__,
        "temperature_K": engine.temperature,
        "kT": engine.energy.kT,
        "timestep": config.timestep,
        "friction": config.friction,
        "seed": config.seed,
        "n_steps": engine.n_steps,
        "n_equilibration_steps": config.n_equilibration_steps,
        "n_pilot_steps": n_pilot,
        "n_sampling_steps": engine.n_steps - steps_before,
        "n_minimization_evaluations": engine.n_minimization_evaluations,
        "n_energy_queries": engine.n_energy_queries,
        "minimized_energy": minimized,
        "pilot_autocorrelation_steps": pilot_taus,
        "sample_autocorrelation": sample_taus,
    }
    return MDRun(
        positions=torch.as_tensor(positions, dtype=torch.float32),
        energies=torch.as_tensor(energies, dtype=torch.float64),
        n_energy_evaluations=engine.n_force_evaluations,
        thinning=thinning,
        autocorrelation_time=float(tau),
        wall_time=wall,
        config=config,
        metadata=metadata,
    )


def _sample_taus(positions: np.ndarray, energies: np.ndarray, config: MDConfig) -> dict[str, float]:
    """Autocorrelation time of each thinning observable over the kept samples (in samples);
    empty when there are too few samples to estimate it."""
    if energies.size < _MIN_SAMPLES_FOR_TAU:
        return {}
    series = observable_series(positions, energies, config.thinning_observables)
    return {name: _sokal_tau(x, config.window_c)[0] for name, x in series.items() if np.ptp(x) > 0}


def observable_series(positions: Any, energies: Any, names: tuple[str, ...] = OBSERVABLES) -> dict[str, np.ndarray]:
    """Scalar time series whose autocorrelation sets the thinning.

    Parameters
    ----------
    positions : array_like
        ``(T, n_particles, d)`` reduced lengths.
    energies : array_like
        ``(T,)`` reduced energies.
    names : tuple of str
        Any of :data:`OBSERVABLES`: ``"energy"`` (potential energy),
        ``"radius_of_gyration"`` (``sqrt(mean_i |x_i - xbar|^2)``) and
        ``"mean_pair_distance"`` (mean over pairs ``i < j`` of ``|x_i - x_j|``).
        The last two are permutation-invariant structural coordinates; for
        DW-4 they relax about 20 times more slowly than the energy
        (docs/md_baselines.md).

    Returns
    -------
    dict
        ``name -> (T,)`` float64 array.
    """
    x = np.asarray(positions, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "energy":
            out[name] = np.asarray(energies, dtype=np.float64)
        elif name == "radius_of_gyration":
            c = x - x.mean(axis=1, keepdims=True)
            out[name] = np.sqrt((c * c).sum(-1).mean(-1))
        elif name == "mean_pair_distance":
            i, j = np.triu_indices(x.shape[1], 1)
            out[name] = np.linalg.norm(x[:, i] - x[:, j], axis=-1).mean(-1)
        else:
            raise ValueError(f"observable names must be among {OBSERVABLES}, got {name!r}")
    return out
