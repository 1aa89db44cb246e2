"""The evaluation report and its typed blocks: metrics, energy budget, likelihood, reweighted estimates.

Every block is a frozen dataclass with the :class:`~idem_md._records.Record` mixin: read its fields
as attributes (``report.metric("energy_w2").mean``, ``report.likelihood.ess``); the old string-keyed
access (``report.metrics["energy_w2"]["mean"]``, ``report.likelihood["ess"]``) still works through
the mixin's read-only dict view and warns with a :class:`DeprecationWarning`.

:meth:`EvaluationReport.to_dict` / :meth:`~EvaluationReport.to_json` write plain data and
:meth:`~EvaluationReport.from_dict` / :meth:`~EvaluationReport.from_json` rebuild the typed blocks
from it, also from files written before the blocks were typed (their absent fields take the
defaults documented on each block).

Examples
--------
>>> m = Metric(mean=1.5, std=0.25, definition="a test value", n_batches=2, batch_size=10)
>>> rep = EvaluationReport(system="dw4", n_samples=10, metrics={"x": m})
>>> rep.metric("x").mean, EvaluationReport.from_json(rep.to_json()) == rep
(1.5, True)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .._files import json_default as _json_default
from .._records import Record

__all__ = ["Metric", "EnergyBudget", "LikelihoodResult", "ReweightedResult", "EvaluationReport"]

_T = TypeVar("_T")


def _from_plain(cls: type[_T], data: Any, where: str) -> _T:
    """``cls(**data)`` for a block read back from plain data, with one-line errors naming ``where``."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise TypeError(f"{where} must be a {cls.__name__} or a dict of its fields, got {type(data).__name__}")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = {f.name for f in fields}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where} has keys {unknown} that {cls.__name__} does not know (expected {sorted(names)})")
    required = {f.name for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(data))
    if missing:
        raise ValueError(f"{where} lacks the required keys {missing} of {cls.__name__}")
    return cls(**data)


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # normalising a field of a frozen dataclass in __post_init__


# ------------------------------------------------------------------ blocks
@dataclass(frozen=True)
class Metric(Record):
    """One metric of a sample set: a value with its spread and what it means.

    Attributes
    ----------
    mean : float
        The value, in the units ``definition`` states (reduced length for W2 of coordinates and
        distances, reduced energy for energy means and energy W2, reduced energy squared for
        ``energy_w2_idem``, dimensionless for TVD and mode coverage).
    std : float
        Standard deviation over the ``n_batches`` batches, same units; with ``n_batches == 1``
        (a single value on all samples) whatever ``definition`` says, e.g. a standard error or 0.
    definition : str
        One line: what was computed, on what, in which unit, and what ``std`` is.
    n_batches : int
        Disjoint random batches the mean and std are taken over (1: one value on all samples).
    batch_size : int
        Samples per batch and set.
    """

    mean: float
    std: float
    definition: str
    n_batches: int
    batch_size: int

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise TypeError(f"Metric.{name} must be a real number, got {type(v).__name__}")
            _set(self, name, float(v))
        for name in ("n_batches", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"Metric.{name} must be a non-negative int, got {v!r}")
            _set(self, name, int(v))
        if not isinstance(self.definition, str):
            raise TypeError(f"Metric.definition must be a str, got {type(self.definition).__name__}")


@dataclass(frozen=True)
class EnergyBudget(Record):
    """Energy evaluations behind a sample set and spent by the evaluation itself.

    Attributes
    ----------
    total : int or None
        Energy evaluations spent to produce the samples; None when unknown.
    breakdown : dict
        ``name -> int`` parts of ``total`` (iDEM's estimator/sampling/evaluation counters, MD's steps
        and minimisation evaluations, ...); empty when unknown.
    source : str
        Where the numbers came from (the samples' metadata, the sampler's counters, ...).
    spent_by_evaluate : int or None
        Energy evaluations :func:`~idem_md.evaluation.evaluate` made itself (missing or recomputed
        energies, model samples for the ESS); None before it finished.
    """

    total: int | None = None
    breakdown: dict[str, int] = field(default_factory=dict)
    source: str = "not recorded"
    spent_by_evaluate: int | None = None


@dataclass(frozen=True)
class LikelihoodResult(Record):
    """The model's NLL of reference samples and its ESS as an importance sampler of the Boltzmann density.

    Log densities in nats, over the coordinates ``convention`` states (the centre-of-mass-free
    subspace for particle systems, in the energy's length unit). Fields left at None were not
    computed (no reference for the NLL, no finite model sample for the ESS) or, in a report
    written by an older version, not recorded.

    Attributes
    ----------
    model : str or None
        ``"density_model"`` (the sampler's CNF) or ``"score_probability_flow"`` (the score's
        probability-flow ODE, a diagnostic).
    nll, nll_median : float or None
        ``-mean`` and ``-median`` of ``log q`` over the reference samples with a finite ``log q``.
    nll_std_error : float or None
        Standard error of ``nll`` (``s / sqrt(n_nll)``).
    n_nll, n_nll_failed : int, int or None
        Reference samples in the NLL, and those left out for a non-finite ``log q`` (failed solves).
    nll_failure_fraction : float or None
        ``n_nll_failed / (n_nll + n_nll_failed)``.
    ess : float or None
        Normalised effective sample size ``1 / (N sum_i w_i^2)`` of model samples, self-normalised
        ``w_i ∝ exp(-E(x_i)/kT) / q(x_i)``; dimensionless, in ``[1/N, 1]``.
    n_ess, n_ess_failed : int, int or None
        Model samples in the ESS, and those left out (non-finite ``log q`` or energy).
    ess_failure_fraction : float or None
        ``n_ess_failed / (n_ess + n_ess_failed)``.
    log_Z_estimate : float or None
        Importance-sampling estimate of ``log ∫ exp(-E/kT)`` (nats).
    method : str
        How ``log q`` was computed (solver, steps, divergence, space).
    convention : str
        Units and normalisation of the NLL.
    """

    model: str | None = None
    nll: float | None = None
    nll_median: float | None = None
    nll_std_error: float | None = None
    n_nll: int = 0
    n_nll_failed: int | None = None
    nll_failure_fraction: float | None = None
    ess: float | None = None
    n_ess: int = 0
    n_ess_failed: int | None = None
    ess_failure_fraction: float | None = None
    log_Z_estimate: float | None = None
    method: str = ""
    convention: str = ""


@dataclass(frozen=True)
class ReweightedResult(Record):
    """Self-normalised importance-sampling estimates from the model samples of the likelihood block.

    Attributes
    ----------
    energy_mean : float
        ``sum_i w_i E(x_i)``, the reweighted estimate of the Boltzmann mean energy (reduced energy).
    raw_energy_mean : float
        Unweighted mean energy of the same model samples (reduced energy).
    ess : float
        The normalised ESS of the weights (dimensionless, as :attr:`LikelihoodResult.ess`).
    n : int
        Model samples used.
    definition : str
        One line: what was computed.
    """

    energy_mean: float
    raw_energy_mean: float
    ess: float
    n: int
    definition: str


# ------------------------------------------------------------------ report
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
        ``name -> Metric``; the names depend on the system (:func:`~idem_md.evaluation.evaluate`
        lists them). Read one with :meth:`metric`.
    energy_evaluations : EnergyBudget
        Energy evaluations spent to produce the samples and by the evaluation itself.
    likelihood : LikelihoodResult or None
        NLL and ESS of the sampler's model (its density model, or the score's probability-flow
        ODE when it has none); None when no sampler was given or ``likelihood=False``.
    score_likelihood : LikelihoodResult or None
        The same block for the probability-flow ODE of the score when the sampler also has a
        density model and ``score_likelihood=True`` was asked for (a diagnostic: that ODE is
        not a usable density, see docs/results.md).
    reweighted : ReweightedResult or None
        Self-normalised importance-sampling estimates from the model samples of ``likelihood``.
    notes : list of str
        Everything a reader needs to interpret the numbers (shrunk batches,
        subsampling, dropped values, ...).
    label : str
        Free label of the sample set (``"iDEM"``, ``"MD"``, ...).

    Plain dicts given for the blocks (the format of :meth:`to_dict`) are converted to the typed blocks.
    """

    system: str
    n_samples: int
    n_reference: int | None = None
    metrics: dict[str, Metric] = field(default_factory=dict)
    energy_evaluations: EnergyBudget = field(default_factory=EnergyBudget)
    likelihood: LikelihoodResult | None = None
    score_likelihood: LikelihoodResult | None = None
    reweighted: ReweightedResult | None = None
    notes: list[str] = field(default_factory=list)
    label: str = "samples"

    def __post_init__(self) -> None:
        if not isinstance(self.metrics, dict):
            raise TypeError(f"metrics must be a dict name -> Metric, got {type(self.metrics).__name__}")
        self.metrics = {str(k): _from_plain(Metric, v, f"metrics[{k!r}]") for k, v in self.metrics.items()}
        self.energy_evaluations = _from_plain(EnergyBudget, self.energy_evaluations, "energy_evaluations")
        for name in ("likelihood", "score_likelihood"):
            if getattr(self, name) is not None:
                setattr(self, name, _from_plain(LikelihoodResult, getattr(self, name), name))
        if self.reweighted is not None:
            self.reweighted = _from_plain(ReweightedResult, self.reweighted, "reweighted")
        if not isinstance(self.notes, list):  # a list stays the same object: evaluate() appends to it
            self.notes = list(self.notes)

    def metric(self, name: str) -> Metric:
        """The metric ``name``; a one-line :class:`KeyError` listing the known names otherwise."""
        try:
            return self.metrics[name]
        except KeyError:
            raise KeyError(f"no metric {name!r} in this {self.system} report; it has {sorted(self.metrics)}") \
                from None

    def to_dict(self) -> dict[str, Any]:
        """A deep copy as plain data (dicts, lists, str, numbers, None)."""
        return json.loads(self.to_json())

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text; non-finite floats are written as ``NaN``/``Infinity`` (Python's json dialect)."""
        return json.dumps(dataclasses.asdict(self), indent=indent, default=_json_default)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvaluationReport":
        """Rebuild a report, with its typed blocks, from :meth:`to_dict` output (also of older versions)."""
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
            (name, m.mean, m.std) for name, m in self.metrics.items()
        ]
        lik, score = self.likelihood, self.score_likelihood
        if lik is not None:
            if lik.nll is not None:
                out.append(("nll", lik.nll, lik.nll_std_error))
                if lik.nll_median is not None:
                    out.append(("nll_median", lik.nll_median, None))
            out.append(("importance_ess", lik.ess, None))
        if score is not None:
            if score.nll is not None:
                out.append(("score_pf_nll (diagnostic)", score.nll, None))
            out.append(("score_pf_ess (diagnostic)", score.ess, None))
        if self.reweighted is not None:
            out.append(("reweighted_energy_mean", self.reweighted.energy_mean, None))
        return out

    def table(self) -> str:
        """A markdown table ``metric | mean | std`` (std ``-`` where none applies), energy evaluations last."""
        lines = [f"{self.label} ({self.system}, N = {self.n_samples})", "", "| metric | mean | std |",
                 "| --- | --- | --- |"]
        lines += [f"| {name} | {fmt(mean)} | {fmt(std)} |" for name, mean, std in self.rows()]
        total = self.energy_evaluations.total
        if total is not None:
            lines.append(f"| energy_evaluations | {int(total)} | - |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


# ----------------------------------------------------------------- formatting
def cell(mean: float | None, std: float | None) -> str:
    """``mean ± std`` (``mean`` alone when ``std`` is None), each as :func:`fmt` writes it."""
    return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std)}"


def fmt(v: Any) -> str:
    """``-`` for None, ints as they are, other numbers to 4 significant digits."""
    if v is None:
        return "-"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    return f"{float(v):.4g}"
