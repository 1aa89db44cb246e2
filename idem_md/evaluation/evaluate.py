"""Evaluation reports: sample-quality metrics, model likelihood and importance-sampling ESS.

:func:`evaluate` turns a set of samples (from iDEM, MD, or any array) and an
optional reference set into an :class:`EvaluationReport` that holds every
metric that applies to the system, each as mean and standard deviation with a
one-line definition, the energy evaluations spent, and, when a trained
:class:`~idem_md.sampler.IDEMSampler` is given, the model's negative
log-likelihood of the reference samples and its effective sample size as an
importance sampler of the Boltzmann density. :func:`compare_with_md` does the
same for an iDEM and an MD sample set side by side and draws the histograms.

Units: lengths in the energy's reduced length unit, energies in its reduced
energy unit, log densities in nats (see :func:`evaluate` for the density
convention).

Examples
--------
>>> from idem_md import get_energy
>>> gmm = get_energy("gmm40")
>>> report = evaluate(gmm.sample(200), gmm, reference=gmm.sample(200), n_batches=2, batch_size=100)
>>> report.metrics["mode_coverage"]["mean"] > 0.5
True
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from . import metrics as M
from .analysis import weights as _weights
from .analysis.weights import importance_weights, log_importance_weights, reweighted_mean
from ._files import json_default as _json_default
from .energies.base import Energy
from .io import Samples

if TYPE_CHECKING:  # annotations only; matplotlib and the sampler are heavy
    from matplotlib.figure import Figure

    from .sampler import IDEMSampler

__all__ = [
    "EvaluationReport",
    "evaluate",
    "compare_with_md",
    "as_samples",
    "log_importance_weights",
    "importance_weights",
    "reweighted_mean",
    "importance_sampling_summary",
]

_ENERGY_CHUNK = 4096  # configurations per energy call (bounds memory for LJ-55)


# ------------------------------------------------------------------------ report
@dataclass
class EvaluationReport:
    """Metrics of one sample set, JSON-serialisable.

    Attributes
    ----------
    system : str
        The energy's name (``"gmm40"``, ``"dw4"``, ...).
    n_samples : int
        Samples evaluated.
    n_reference : int or None
        Reference samples compared against (None without a reference).
    metrics : dict
        ``name -> {"mean", "std", "definition", "n_batches", "batch_size"}``;
        ``mean``/``std`` are floats in the units the definition states.
        ``n_batches == 1`` marks a single value computed on all samples (its
        ``std`` is then whatever the definition says, e.g. a standard error).
    energy_evaluations : dict
        ``total`` (int or None) spent to produce the samples, ``breakdown``
        (dict, e.g. iDEM's estimator/sampling/evaluation counters), ``source``
        (where the numbers came from) and ``spent_by_evaluate`` (energy
        evaluations :func:`evaluate` itself made: missing energies, model
        samples for the ESS).
    likelihood : dict or None
        ``nll``, ``nll_median``, ``nll_std_error``, ``n_nll``, ``n_nll_failed``, ``ess``, ``n_ess``,
        ``n_ess_failed``, ``log_Z_estimate``, ``model`` (``"density_model"``: the sampler's CNF,
        or ``"score_probability_flow"`` when it has none), ``method``, ``convention``; None when
        no sampler was given or ``likelihood=False``.
    score_likelihood : dict or None
        The same block for the probability-flow ODE of the score when the sampler also has a
        density model and ``score_likelihood=True`` was asked for (a diagnostic: that ODE is
        not a usable density, see docs/results.md).
    reweighted : dict or None
        Self-normalised importance-sampling estimates from the model samples:
        ``energy_mean`` (reweighted), ``raw_energy_mean``, ``ess``, ``n``,
        ``definition``.
    notes : list of str
        Everything a reader needs to interpret the numbers (shrunk batches,
        subsampling, dropped values, ...).
    label : str
        Free label of the sample set (``"iDEM"``, ``"MD"``, ...).
    """

    system: str
    n_samples: int
    n_reference: int | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    energy_evaluations: dict[str, Any] = field(default_factory=dict)
    likelihood: dict[str, Any] | None = None
    score_likelihood: dict[str, Any] | None = None
    reweighted: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    label: str = "samples"

    def to_dict(self) -> dict[str, Any]:
        """A deep copy as plain data (dicts, lists, str, numbers, None)."""
        return json.loads(self.to_json())

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text; non-finite floats are written as ``NaN``/``Infinity`` (Python's json dialect)."""
        return json.dumps(dataclasses.asdict(self), indent=indent, default=_json_default)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvaluationReport":
        """Rebuild a report from :meth:`to_dict` output."""
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict from EvaluationReport.to_dict(), got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"data has keys {unknown} that EvaluationReport does not know (expected {sorted(names)})")
        missing = sorted({"system", "n_samples"} - set(data))
        if missing:
            raise ValueError(f"data lacks the required keys {missing}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "EvaluationReport":
        """Rebuild a report from :meth:`to_json` output."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a JSON str, got {type(text).__name__}")
        return cls.from_dict(json.loads(text))

    def rows(self) -> list[tuple[str, float | None, float | None]]:
        """``(name, mean, std)`` for every metric, then the likelihood/ESS values when present."""
        out: list[tuple[str, float | None, float | None]] = [
            (name, m["mean"], m["std"]) for name, m in self.metrics.items()
        ]
        if self.likelihood is not None:
            if self.likelihood.get("nll") is not None:
                out.append(("nll", self.likelihood["nll"], self.likelihood.get("nll_std_error")))
                if self.likelihood.get("nll_median") is not None:
                    out.append(("nll_median", self.likelihood["nll_median"], None))
            out.append(("importance_ess", self.likelihood["ess"], None))
        if self.score_likelihood is not None:
            if self.score_likelihood.get("nll") is not None:
                out.append(("score_pf_nll (diagnostic)", self.score_likelihood["nll"], None))
            out.append(("score_pf_ess (diagnostic)", self.score_likelihood["ess"], None))
        if self.reweighted is not None:
            out.append(("reweighted_energy_mean", self.reweighted["energy_mean"], None))
        return out

    def table(self) -> str:
        """A markdown table ``metric | mean | std`` (std ``-`` where none applies), energy evaluations last."""
        lines = [f"{self.label} ({self.system}, N = {self.n_samples})", "", "| metric | mean | std |",
                 "| --- | --- | --- |"]
        lines += [f"| {name} | {_fmt(mean)} | {_fmt(std)} |" for name, mean, std in self.rows()]
        total = self.energy_evaluations.get("total")
        if total is not None:
            lines.append(f"| energy_evaluations | {int(total)} | - |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


# ------------------------------------------------------------ importance weights
def importance_sampling_summary(log_p_unnorm: Any, log_q: Any, values: Any = None) -> dict[str, float]:
    r"""ESS, log normalising constant and (optionally) a reweighted mean from proposal samples.

    Returns
    -------
    dict
        ``ess``: normalised effective sample size ``1 / (N \sum_i w_i^2)`` with
        self-normalised ``w`` (in ``[1/N, 1]``, :func:`idem_md.metrics.effective_sample_size`);
        ``log_Z``: ``log (1/N \sum_i \tilde w_i)``, the importance-sampling
        estimate of ``log \int p~`` (nats); ``reweighted_mean`` when ``values`` is given.
    """
    summary = _weights.importance_sampling_summary(log_p_unnorm, log_q, values)  # the typed version
    out = {"ess": summary.ess, "log_Z": summary.log_Z}
    if values is not None:
        out["reweighted_mean"] = summary.reweighted_mean
    return out


# -------------------------------------------------------------------- evaluate
def evaluate(
    samples: Any,
    energy: Energy | str,
    reference: Any = None,
    *,
    sampler: "IDEMSampler | None" = None,
    n_batches: int = 5,
    batch_size: int = 1000,
    seed: int = 0,
    likelihood: bool | None = None,
    likelihood_samples: int = 1000,
    score_likelihood: bool = False,
    trust_stored_energies: bool = False,
    ode_steps: int = 200,
    divergence: str = "auto",
    geometric_max_samples: int | None = 200,
    tvd_bins: int = 200,
    label: str = "samples",
) -> EvaluationReport:
    r"""Every metric that applies to ``samples`` of ``energy``, optionally against a reference set.

    Computed metrics (names as in :attr:`EvaluationReport.metrics`):

    * always: ``energy_mean`` (std = standard error ``s / sqrt(N)``, assuming
      independent samples) and ``energy_std`` (std = ``s / sqrt(2 (N - 1))``,
      its normal-theory standard error) of the samples; the same for the
      reference as ``reference_energy_mean``/``reference_energy_std``;
    * with a reference, each as mean ± std over ``n_batches`` disjoint random
      batches of ``batch_size`` samples from each set (:func:`idem_md.metrics.batched`):
      ``coordinate_w2`` (exact W2 of whole configurations, centred on the
      centre of mass for particle systems: the iDEM paper's x-W2),
      ``energy_w2`` (exact 1D W2 of the energies, with the root),
      ``energy_w2_idem`` (the squared value the iDEM code reports), and for
      particle systems ``geometric_w2`` (rotation/permutation-aligned cost,
      each batch subsampled to ``geometric_max_samples`` per set),
      ``distance_w2`` and ``distance_tvd`` (pooled interatomic distances,
      ``tvd_bins`` bins). When a set holds fewer than ``n_batches * batch_size``
      samples the batch size shrinks to fit (noted in the report);
    * mixtures with ``energy.means`` (GMM-40): ``mode_coverage`` on all samples
      (nearest-mean assignment, a mode counts with >= 1% of the samples).

    With a ``sampler`` (and ``likelihood`` not False), the likelihood block. When the sampler
    has a density model (:meth:`IDEMSampler.fit_density`, the iDEM paper's route) it gives
    ``nll`` (:meth:`DensityModel.log_prob` of the reference samples, dopri5) and ``ess``
    (importance weights of :meth:`DensityModel.sample_with_log_prob` draws); failed ODE solves
    are counted (``n_nll_failed``, ``n_ess_failed``), never silently dropped. Without one, the
    score's probability-flow ODE stands in (a diagnostic; with ``score_likelihood=True`` it is
    computed beside the density model's block):

    * ``nll = -mean_i log q(x_i)`` over (up to ``likelihood_samples``)
      reference samples, where ``log q`` is :meth:`IDEMSampler.log_prob`: the
      probability-flow ODE of the trained score, integrated with ``ode_steps``
      Euler steps, with an exact divergence (one backward pass per coordinate)
      or a Hutchinson estimate (one fixed Rademacher probe per sample). The
      density is with respect to Lebesgue measure in the energy's coordinates
      (reduced lengths); for particle systems it is the density on the
      ``(n - 1) d``-dimensional centre-of-mass-free subspace, in orthonormal
      coordinates of that subspace;
      ``nll_median`` is reported beside the mean: a few reference points in a
      region the model misses dominate the mean;
    * ``ess``: ``likelihood_samples`` samples ``x_i ~ q`` of the
      probability-flow ODE model (:meth:`IDEMSampler.sample_with_log_prob`:
      prior samples integrated down to ``t_min``, with ``log q`` accumulated
      along the same trajectories) are weighted with
      ``log w_i = -E(x_i)/kT - log q(x_i)``; the normalised ESS
      ``1 / (N sum_i w_i^2)`` (self-normalised ``w``) is reported, with the
      self-normalised reweighted energy mean in :attr:`EvaluationReport.reweighted`.

    The ODE model is the trained network used deterministically; it is not
    the reverse SDE that draws the samples of the other metrics, and with an
    imperfect score the two have different densities: weighting SDE samples
    with the ODE's ``q`` would be wrong, so the ESS is that of the ODE model.
    The Euler discretisation (``ode_steps``) biases ``log q`` slightly; with
    the Hutchinson divergence ``log q`` is also noisy, and that noise alone
    lowers the ESS.

    Parameters
    ----------
    samples : Samples, MDRun, array or tensor
        Configurations to evaluate, ``(N, n, d)`` or flat ``(N, dim)``
        (arrays are read particle-major). Energies already held (Samples,
        MDRun) are used; missing ones are computed with ``energy``.
    energy : Energy or str
        The target (or its registry name).
    reference : Samples, MDRun, array or tensor, optional
        Ground-truth samples (e.g. the reference files or a long MD run).
    sampler : IDEMSampler, optional
        The trained model, for the likelihood block; its energy must be ``energy``'s system.
    n_batches, batch_size : int
        Batches for the mean ± std of the reference metrics.
    seed : int
        Seeds the batching and subsampling (numpy ``default_rng``).
    likelihood : bool, optional
        Compute the likelihood block; default: when a sampler is given.
        ``True`` without a sampler raises.
    likelihood_samples : int
        Reference samples for the NLL and model samples for the ESS.
    score_likelihood : bool
        Also compute the score's probability-flow block when the sampler has a density model.
    trust_stored_energies : bool
        Use the energies the sets carry instead of recomputing them (default: recompute, and note
        and warn about stored energies that disagree, e.g. an edited file).
    ode_steps : int
        Euler steps of the probability-flow ODE.
    divergence : {"auto", "exact", "hutchinson"}
        Passed to :meth:`IDEMSampler.log_prob`.
    geometric_max_samples : int or None
        Per-batch subsample of the geometric W2 (its cost grows as the product of the set sizes).
    tvd_bins : int
        Bins of the distance TVD.
    label : str
        Stored in the report.

    Returns
    -------
    EvaluationReport

    Raises
    ------
    ValueError
        Empty sets, configurations of another shape than ``energy``'s,
        non-finite coordinates, bad batch settings, ``likelihood=True``
        without a sampler, or a sampler for another system.
    """
    energy = _resolve_energy(energy)
    _check_positive_int(n_batches, "n_batches")
    _check_positive_int(batch_size, "batch_size")
    _check_positive_int(likelihood_samples, "likelihood_samples")
    _check_positive_int(ode_steps, "ode_steps")
    _check_positive_int(tvd_bins, "tvd_bins")
    if divergence not in ("auto", "exact", "hutchinson"):
        raise ValueError(f"divergence must be 'auto', 'exact' or 'hutchinson', got {divergence!r}")
    if likelihood is None:
        likelihood = sampler is not None
    if likelihood and sampler is None:
        raise ValueError("likelihood=True needs a trained sampler=IDEMSampler(...) to compute log q")
    if sampler is not None:
        _check_sampler(sampler, energy)

    notes: list[str] = []
    spent = _EvaluationCounter(energy, sampler)
    s = as_samples(samples, energy, "samples")
    r = as_samples(reference, energy, "reference") if reference is not None else None
    _note_system_mismatch(s, energy, "samples", notes)
    if r is not None:
        _note_system_mismatch(r, energy, "reference", notes)
    e_s = _energies_of(s, energy, "samples", notes, trust_stored_energies)
    e_r = _energies_of(r, energy, "reference", notes, trust_stored_energies) if r is not None else None

    report = EvaluationReport(system=energy.name, n_samples=len(s), n_reference=None if r is None else len(r),
                              label=str(label), notes=notes)
    report.metrics.update(_energy_statistics(e_s, "energy"))
    if r is not None:
        report.metrics.update(_energy_statistics(e_r, "reference_energy"))
        report.metrics.update(_reference_metrics(
            _positions(s), _positions(r), e_s, e_r, energy, n_batches, batch_size, seed,
            geometric_max_samples, tvd_bins, notes))
    report.metrics.update(_mode_metrics(_positions(s), energy))
    report.energy_evaluations = _evaluations_spent(s, sampler)

    if likelihood:
        from .likelihood import density_likelihood_block, score_likelihood_block

        if sampler.density is not None:
            report.likelihood, report.reweighted = density_likelihood_block(
                sampler.density, energy, r, likelihood_samples, seed, notes)
        if sampler.density is None or score_likelihood:
            block, reweighted = score_likelihood_block(sampler, energy, r, likelihood_samples, ode_steps, divergence,
                                                       seed, notes)
            if sampler.density is None:
                report.likelihood, report.reweighted = block, reweighted
            else:
                report.score_likelihood = block
    report.energy_evaluations["spent_by_evaluate"] = spent.spent()
    return report


def compare_with_md(
    samples: Any,
    md_run: Any,
    energy: Energy | str,
    reference: Any = None,
    *,
    labels: tuple[str, str] = ("iDEM", "MD"),
    **kw: Any,
) -> tuple[str, dict[str, EvaluationReport], dict[str, "Figure"]]:
    """Evaluate iDEM samples and an MD run on the same footing, with a side-by-side table and histograms.

    Both sets are evaluated by :func:`evaluate` against the same ``reference``;
    without one, each is evaluated against the other (symmetric metrics then
    agree by construction and measure how far the two samplers disagree).
    ``sampler=`` (in ``kw``) is used for the iDEM set only.

    Parameters
    ----------
    samples : Samples, array or tensor
        iDEM samples.
    md_run : MDRun, Samples, array or tensor
        MD samples (:func:`idem_md.md.run_md` output).
    energy : Energy or str
        The target.
    reference : optional
        Ground-truth samples for both.
    labels : (str, str)
        Column/legend names of the two sets.
    **kw
        Passed to :func:`evaluate` (``n_batches``, ``batch_size``, ``seed``, ``sampler``, ...).

    Returns
    -------
    table : str
        Markdown table ``metric | <iDEM> | <MD>`` with ``mean ± std`` cells and the energy evaluations.
    reports : dict
        ``{"idem": EvaluationReport, "md": EvaluationReport}``.
    figures : dict
        ``"energy_histogram"`` and, for particle systems, ``"distance_histogram"``
        (:class:`matplotlib.figure.Figure`, not shown or saved).
    """
    from . import plots

    if not (isinstance(labels, (tuple, list)) and len(labels) == 2 and all(isinstance(x, str) for x in labels)):
        raise ValueError(f"labels must be a pair of str, got {labels!r}")
    energy = _resolve_energy(energy)
    s = as_samples(samples, energy, "samples")
    m = as_samples(md_run, energy, "md_run")
    r = as_samples(reference, energy, "reference") if reference is not None else None
    # compute missing energies once, so both evaluations and the plots reuse them
    before = energy.n_evaluations
    s, m = _with_energies(s, energy), _with_energies(m, energy)
    r = _with_energies(r, energy) if r is not None else None
    computed = energy.n_evaluations - before
    md_kw = {k: v for k, v in kw.items() if k not in ("sampler", "likelihood")}
    rep_idem = evaluate(s, energy, r if r is not None else m, label=labels[0], **kw)
    rep_md = evaluate(m, energy, r, label=labels[1], **md_kw)
    if r is None:
        _share_cross_metrics(rep_idem, rep_md, labels)
    if computed:
        for rep in (rep_idem, rep_md):
            rep.notes.append(f"compare_with_md computed {computed} missing energies of the input sets "
                             "(not included in spent_by_evaluate)")

    sets = {labels[0]: s, labels[1]: m}
    if r is not None:
        sets = {"reference": r, **sets}
    figures = {"energy_histogram": plots.energy_histogram(sets, energy=energy)}
    if energy.is_particle_system:
        figures["distance_histogram"] = plots.distance_histogram(sets, energy.n_particles, energy.spatial_dim)
    return _comparison_table(rep_idem, rep_md, labels), {"idem": rep_idem, "md": rep_md}, figures


# --------------------------------------------------------------- input handling
def as_samples(obj: Any, energy: Energy, name: str = "samples") -> Samples:
    """``obj`` (Samples, MDRun, ``(N, n, d)``/``(N, dim)`` array or tensor) as non-empty Samples of ``energy``'s shape.

    Raises :class:`ValueError` naming ``name`` for empty sets or another
    particle count / spatial dimension than ``energy``'s.
    """
    n, d = energy.n_particles, energy.spatial_dim
    if isinstance(obj, Samples):
        s = obj
    elif hasattr(obj, "to_samples") and callable(obj.to_samples):  # MDRun, without importing openmm's module
        s = obj.to_samples()
    elif isinstance(obj, (torch.Tensor, np.ndarray, list, tuple)):
        arr = obj if isinstance(obj, torch.Tensor) else np.asarray(obj)
        if arr.ndim >= 1 and arr.shape[0] == 0:
            raise ValueError(f"{name} is empty (shape {tuple(arr.shape)}); need at least one configuration")
        try:
            s = Samples.from_array(arr, n, d)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} does not hold configurations of {energy.name} ({n} particles in {d}D): {err}") \
                from err
    else:
        raise TypeError(f"{name} must be Samples, an MDRun, or an (N, {n * d}) / (N, {n}, {d}) array or tensor, "
                        f"got {type(obj).__name__}")
    if len(s) == 0:
        raise ValueError(f"{name} is empty (0 configurations); need at least one")
    if (s.n_particles, s.spatial_dim) != (n, d):
        raise ValueError(f"{name} holds configurations of {s.n_particles} particles in {s.spatial_dim}D, "
                         f"but energy {energy.name!r} is for {n} particles in {d}D")
    return s


def _resolve_energy(energy: Any) -> Energy:
    if isinstance(energy, str):
        from .energies.registry import get_energy

        return get_energy(energy)
    if not isinstance(energy, Energy):
        raise TypeError(f"energy must be an idem_md Energy or a registered system name, got {type(energy).__name__}")
    return energy


def _check_sampler(sampler: Any, energy: Energy) -> None:
    for attr in ("log_prob", "sample", "sample_with_log_prob", "energy"):
        if not hasattr(sampler, attr):
            raise TypeError(f"sampler must be an IDEMSampler (with .{attr}), got {type(sampler).__name__}")
    mine, theirs = energy.identity(), sampler.energy.identity()
    if mine != theirs:
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise ValueError(f"sampler was built for another system than energy {energy.name!r} (differs in {diff})")


def _check_positive_int(v: Any, name: str) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")


def _note_system_mismatch(s: Samples, energy: Energy, name: str, notes: list[str]) -> None:
    system = s.metadata.get("system")
    if system is not None and str(system) != energy.name:
        notes.append(f"{name} metadata names system {system!r}, evaluated with energy {energy.name!r}")


def _positions(s: Samples) -> np.ndarray:
    return s.positions.detach().cpu().double().numpy()  # (N, n, d)


def _compute_energies(x: torch.Tensor, energy: Energy) -> np.ndarray:
    dev = energy._device() or torch.device("cpu")
    with torch.no_grad():
        parts = [energy.energy(c.to(dev)).detach().cpu().double() for c in torch.split(x, _ENERGY_CHUNK)]
    return torch.cat(parts).numpy()


def _energies_of(s: Samples, energy: Energy, name: str, notes: list[str], trust_stored: bool = False) -> np.ndarray:
    """``(N,)`` float64 energies, recomputed with ``energy`` unless ``trust_stored`` (then the ones held,
    if any). Stored energies that disagree with the recomputed ones are reported in ``notes`` and warned about."""
    held = None if s.energies is None else s.energies.detach().cpu().double().numpy()
    if held is not None and trust_stored:
        return held
    e = _compute_energies(s.positions, energy)
    if held is None:
        notes.append(f"{name} carried no energies: computed with {energy.name} ({len(s)} evaluations)")
        return e
    both = np.isfinite(e) & np.isfinite(held)
    bad = ~both | (np.abs(e - held) > 1e-4 * np.maximum(1.0, np.abs(e)))
    if bad.any():
        msg = (f"{name}: {int(bad.sum())} of {len(s)} stored energies disagree with {energy.name}'s "
               f"(largest difference {float(np.nanmax(np.abs(e - held))):.3g}); the recomputed energies are used")
        notes.append(msg)
        warnings.warn(msg, stacklevel=3)
    return e


def _with_energies(s: Samples, energy: Energy) -> Samples:
    if s.energies is not None:
        return s
    return Samples(s.positions, torch.from_numpy(_compute_energies(s.positions, energy)).to(s.positions.device),
                   dict(s.metadata))


class _EvaluationCounter:
    """Energy evaluations made between construction and :meth:`spent`, over the energy and the sampler's energy."""

    def __init__(self, energy: Energy, sampler: Any):
        self.energies = [energy]
        if sampler is not None and sampler.energy is not energy:
            self.energies.append(sampler.energy)
        self.start = [e.n_evaluations for e in self.energies]

    def spent(self) -> int:
        return int(sum(e.n_evaluations - s for e, s in zip(self.energies, self.start)))


# ------------------------------------------------------------------ metrics
def _metric(mean: float, std: float, definition: str, n_batches: int, batch_size: int) -> dict[str, Any]:
    return {"mean": float(mean), "std": float(std), "definition": definition, "n_batches": int(n_batches),
            "batch_size": int(batch_size)}


def _energy_statistics(e: np.ndarray, prefix: str) -> dict[str, dict[str, Any]]:
    n = len(e)
    sd = float(e.std(ddof=1)) if n > 1 else 0.0
    who = "samples" if prefix == "energy" else "reference samples"
    return {
        f"{prefix}_mean": _metric(e.mean(), sd / math.sqrt(n), f"mean energy of all {who} (reduced energy); "
                                  "std = standard error s/sqrt(N), assuming independent samples", 1, n),
        f"{prefix}_std": _metric(sd, sd / math.sqrt(2 * (n - 1)) if n > 1 else 0.0,
                                 f"standard deviation (ddof=1) of the energies of all {who}; "
                                 "std = normal-theory standard error s/sqrt(2(N-1))", 1, n),
    }


def _batch_plan(n_x: int, n_y: int, n_batches: int, batch_size: int, notes: list[str]) -> tuple[int, int]:
    """Shrink ``batch_size`` (then ``n_batches``) so that both sets hold ``n_batches`` disjoint batches."""
    smallest = min(n_x, n_y)
    if smallest >= n_batches * batch_size:
        return n_batches, batch_size
    if smallest >= 2 * n_batches:
        bs = smallest // n_batches
        notes.append(f"batch_size shrunk from {batch_size} to {bs}: the smaller set holds {smallest} samples, "
                     f"fewer than n_batches * batch_size = {n_batches * batch_size}; W2 values grow as batches "
                     "shrink, so compare only numbers computed with the same batch size")
        return n_batches, bs
    notes.append(f"only {smallest} samples in the smaller set: reference metrics computed once on all of them "
                 f"(1 batch of {smallest}, std 0) instead of {n_batches} batches of {batch_size}")
    return 1, smallest


def _reference_metrics(x: np.ndarray, y: np.ndarray, e_x: np.ndarray, e_y: np.ndarray, energy: Energy,
                       n_batches: int, batch_size: int, seed: int, geometric_max_samples: int | None,
                       tvd_bins: int, notes: list[str]) -> dict[str, dict[str, Any]]:
    nb, bs = _batch_plan(len(x), len(y), n_batches, batch_size, notes)
    per = f"; mean ± std over {nb} disjoint random batch(es) of {bs} samples per set"
    particles = energy.is_particle_system

    def run(fn: Callable[[Any, Any], float], a: Any, b: Any) -> tuple[float, float]:
        # same seed and set sizes => the same permutations, so energy batches pair with coordinate batches
        return M.batched(fn, a, b, n_batches=nb, batch_size=bs, seed=seed)

    out: dict[str, dict[str, Any]] = {}
    centred = "centred on each configuration's centre of mass (iDEM x-W2 convention)" if particles else "not centred"
    out["coordinate_w2"] = _metric(*run(M.coordinate_w2, x, y), "exact W2 between flattened configurations, "
                                   f"{centred} (reduced length){per}", nb, bs)
    if particles:
        gsub = geometric_max_samples if geometric_max_samples is None else min(int(geometric_max_samples), bs)
        if gsub is not None and gsub < bs:
            notes.append(f"geometric_w2: each batch subsampled to {gsub} configurations per set "
                         "(alignment cost grows as N*M)")
        out["geometric_w2"] = _metric(
            *run(lambda a, b: M.geometric_w2(a, b, max_samples=gsub, seed=seed), x, y),
            "W2 with a rotation- and permutation-minimised cost (Kabsch + Hungarian alignment, an upper bound), "
            f"each batch subsampled to {gsub if gsub is not None else bs} configurations per set "
            f"(reduced length){per}", nb, bs)
    out["energy_w2"] = _metric(*run(M.energy_w2, e_x, e_y),
                               f"exact 1D W2 between energy distributions, with the root (reduced energy){per}", nb, bs)
    out["energy_w2_idem"] = _metric(*run(M.energy_w2_idem_convention, e_x, e_y),
                                    "squared 1D energy W2 (no root), the number the iDEM code reports as E-W2 "
                                    f"(reduced energy squared){per}", nb, bs)
    if particles:
        out["distance_w2"] = _metric(*run(M.distance_w2, x, y), "exact 1D W2 between pooled interatomic distances "
                                     f"(reduced length){per}", nb, bs)
        out["distance_tvd"] = _metric(
            *run(lambda a, b: M.distance_tvd(a, b, bins=tvd_bins), x, y),
            f"total variation distance between histograms of pooled interatomic distances, {tvd_bins} equal bins "
            f"over the common range of each batch pair (dimensionless, [0, 1]){per}", nb, bs)
    return out


def _mode_metrics(x: np.ndarray, energy: Energy) -> dict[str, dict[str, Any]]:
    means = getattr(energy, "means", None)
    if not isinstance(means, torch.Tensor) or energy.n_particles != 1:
        return {}
    mu = means.detach().cpu().double().numpy()  # (M, d)
    cov = M.mode_coverage(x.reshape(len(x), -1), mu)
    return {"mode_coverage": _metric(cov, 0.0, f"fraction of the {len(mu)} modes holding >= 1% of all {len(x)} "
                                     "samples (nearest-mean assignment); single value on all samples, std 0",
                                     1, len(x))}


def _evaluations_spent(s: Samples, sampler: Any) -> dict[str, Any]:
    """Energy evaluations that produced the samples, from their metadata or the sampler's counters."""
    meta = s.metadata.get("energy_evaluations")
    if isinstance(meta, dict):
        breakdown = {str(k): int(v) for k, v in meta.items()}
        return {"total": int(sum(breakdown.values())), "breakdown": breakdown,
                "source": "samples.metadata['energy_evaluations']"}
    if isinstance(meta, (int, float)) and not isinstance(meta, bool):
        breakdown = {}
        for key in ("n_steps", "n_minimization_evaluations", "n_energy_queries"):  # MDRun metadata
            if isinstance(s.metadata.get(key), (int, float)):
                breakdown[key] = int(s.metadata[key])
        return {"total": int(meta), "breakdown": breakdown, "source": "samples.metadata['energy_evaluations']"}
    if sampler is not None:
        breakdown = {str(k): int(v) for k, v in sampler.counters.items()}
        return {"total": int(sum(breakdown.values())), "breakdown": breakdown,
                "source": "sampler.counters at the start of evaluate()"}
    return {"total": None, "breakdown": {}, "source": "unknown: samples carry no 'energy_evaluations' metadata"}


def _share_cross_metrics(rep_idem: EvaluationReport, rep_md: EvaluationReport, labels: tuple[str, str]) -> None:
    """Without a reference the iDEM-vs-MD metrics are one comparison: give the MD report the same numbers."""
    own = {"energy_mean", "energy_std", "mode_coverage"}
    shared = {k: dict(v) for k, v in rep_idem.metrics.items() if k not in own}
    for k in ("reference_energy_mean", "reference_energy_std"):  # the iDEM report's reference is the MD set
        shared.pop(k, None)
    shared["reference_energy_mean"], shared["reference_energy_std"] = (
        dict(rep_idem.metrics["energy_mean"]), dict(rep_idem.metrics["energy_std"]))
    rep_md.metrics.update(shared)
    rep_md.n_reference = rep_idem.n_samples
    rep_idem.notes.append(f"no reference given: compared against the {labels[1]} samples")
    rep_md.notes.append(f"no reference given: compared against the {labels[0]} samples (the comparison metrics "
                        f"are the ones computed for the {labels[0]} report, {labels[0]} vs {labels[1]})")


# ----------------------------------------------------------------- formatting
def _comparison_table(a: EvaluationReport, b: EvaluationReport, labels: tuple[str, str]) -> str:
    rows_a = {name: (mean, std) for name, mean, std in a.rows()}
    rows_b = {name: (mean, std) for name, mean, std in b.rows()}
    names = list(rows_a) + [n for n in rows_b if n not in rows_a]
    lines = [f"| metric | {labels[0]} | {labels[1]} |", "| --- | --- | --- |"]
    for name in names:
        cells = [_cell(*rows[name]) if name in rows else "-" for rows in (rows_a, rows_b)]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    evals = [rep.energy_evaluations.get("total") for rep in (a, b)]
    lines.append(f"| energy_evaluations | {_fmt(evals[0])} | {_fmt(evals[1])} |")
    return "\n".join(lines)


def _cell(mean: float | None, std: float | None) -> str:
    return _fmt(mean) if std is None else f"{_fmt(mean)} ± {_fmt(std)}"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    return f"{float(v):.4g}"
