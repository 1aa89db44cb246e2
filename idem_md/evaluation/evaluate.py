"""The evaluation itself: :func:`evaluate` collects the metric blocks of one sample set into a report.

Data flow: inputs (:mod:`.inputs`: sample sets and their energies) -> metric blocks (:mod:`.blocks`)
-> the likelihood block (:mod:`idem_md.likelihood`, with a sampler) -> :class:`.report.EvaluationReport`.
Units: lengths in the energy's reduced length unit, energies in its reduced energy unit, log
densities in nats.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..analysis import weights as _weights
from ..energies.base import Energy
from .blocks import energy_statistics, evaluations_spent, mode_metrics, reference_metrics
from .inputs import (
    EvaluationCounter,
    as_samples,
    check_positive_int,
    check_sampler,
    checked_energies,
    note_system_mismatch,
    positions,
    resolve_energy,
)
from .report import EvaluationReport

if TYPE_CHECKING:  # annotations only; the sampler is heavy
    from ..sampler import IDEMSampler

__all__ = ["evaluate", "importance_sampling_summary"]


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
    energy = resolve_energy(energy)
    for value, name in ((n_batches, "n_batches"), (batch_size, "batch_size"),
                        (likelihood_samples, "likelihood_samples"), (ode_steps, "ode_steps"), (tvd_bins, "tvd_bins")):
        check_positive_int(value, name)
    if divergence not in ("auto", "exact", "hutchinson"):
        raise ValueError(f"divergence must be 'auto', 'exact' or 'hutchinson', got {divergence!r}")
    if likelihood is None:
        likelihood = sampler is not None
    if likelihood and sampler is None:
        raise ValueError("likelihood=True needs a trained sampler=IDEMSampler(...) to compute log q")
    if sampler is not None:
        check_sampler(sampler, energy)

    notes: list[str] = []
    spent = EvaluationCounter(energy, sampler)
    s = as_samples(samples, energy, "samples")
    r = as_samples(reference, energy, "reference") if reference is not None else None
    note_system_mismatch(s, energy, "samples", notes)
    if r is not None:
        note_system_mismatch(r, energy, "reference", notes)
    e_s = checked_energies(s, energy, "samples", notes, trust_stored_energies)
    e_r = checked_energies(r, energy, "reference", notes, trust_stored_energies) if r is not None else None

    report = EvaluationReport(system=energy.name, n_samples=len(s), n_reference=None if r is None else len(r),
                              label=str(label), notes=notes)
    report.metrics.update(energy_statistics(e_s, "energy"))
    if r is not None:
        report.metrics.update(energy_statistics(e_r, "reference_energy"))
        report.metrics.update(reference_metrics(positions(s), positions(r), e_s, e_r, energy, n_batches, batch_size,
                                                seed, geometric_max_samples, tvd_bins, notes))
    report.metrics.update(mode_metrics(positions(s), energy))
    budget = evaluations_spent(s, sampler)
    if likelihood:
        _likelihood_blocks(report, sampler, energy, r, likelihood_samples, score_likelihood, ode_steps, divergence,
                           seed)
    report.energy_evaluations = dataclasses.replace(budget, spent_by_evaluate=spent.spent())
    return report


def _likelihood_blocks(report: EvaluationReport, sampler: Any, energy: Energy, r: Any, n_points: int,
                       score_likelihood: bool, ode_steps: int, divergence: str, seed: int) -> None:
    """Fill ``report.likelihood`` / ``.reweighted`` (and ``.score_likelihood`` when asked for)."""
    from ..likelihood import density_likelihood_block, score_likelihood_block

    if sampler.density is not None:
        report.likelihood, report.reweighted = density_likelihood_block(
            sampler.density, energy, r, n_points, seed, report.notes)
    if sampler.density is None or score_likelihood:
        block, reweighted = score_likelihood_block(sampler, energy, r, n_points, ode_steps, divergence, seed,
                                                   report.notes)
        if sampler.density is None:
            report.likelihood, report.reweighted = block, reweighted
        else:
            report.score_likelihood = block
