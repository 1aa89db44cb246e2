"""Evaluation reports: sample-quality metrics, model likelihood and importance-sampling ESS.

:func:`evaluate` turns a set of samples (from iDEM, MD, or any array) and an
optional reference set into an :class:`EvaluationReport` that holds every
metric that applies to the system, each a :class:`Metric` (mean, standard
deviation, one-line definition), the energy evaluations spent
(:class:`EnergyBudget`), and, when a trained :class:`~idem_md.sampler.IDEMSampler`
is given, the model's negative log-likelihood of the reference samples and its
effective sample size as an importance sampler of the Boltzmann density
(:class:`LikelihoodResult`, :class:`ReweightedResult`). :func:`compare_with_md`
does the same for an iDEM and an MD sample set side by side and draws the histograms.

Modules, along the data flow:

* :mod:`.inputs`: sample sets as :class:`~idem_md.io.Samples` (:func:`as_samples`), their energies;
* :mod:`.blocks`: the metric blocks (energy statistics, reference metrics, mode coverage, budget);
* :mod:`.evaluate`: :func:`evaluate` (and the likelihood block from :mod:`idem_md.likelihood`);
* :mod:`.report`: the typed report, its JSON round trip and tables;
* :mod:`.compare`: :func:`compare_with_md`, the side-by-side table, figures from :mod:`idem_md.plots`.

Units: lengths in the energy's reduced length unit, energies in its reduced
energy unit, log densities in nats (see :func:`evaluate` for the density
convention).

Examples
--------
>>> from idem_md import get_energy
>>> gmm = get_energy("gmm40")
>>> report = evaluate(gmm.sample(200), gmm, reference=gmm.sample(200), n_batches=2, batch_size=100)
>>> report.metric("mode_coverage").mean > 0.5
True
"""

from __future__ import annotations

from ..analysis.weights import importance_weights, log_importance_weights, reweighted_mean
from .compare import compare_with_md
from .evaluate import evaluate, importance_sampling_summary
from .inputs import as_samples
from .report import EnergyBudget, EvaluationReport, LikelihoodResult, Metric, ReweightedResult

__all__ = [
    "EvaluationReport",
    "evaluate",
    "compare_with_md",
    "as_samples",
    "log_importance_weights",
    "importance_weights",
    "reweighted_mean",
    "importance_sampling_summary",
    "Metric",
    "EnergyBudget",
    "LikelihoodResult",
    "ReweightedResult",
]
