"""iDEM against MD: :func:`compare_with_md` evaluates both sets on the same footing, tabulates and plots them.

The figures come from :mod:`idem_md.plots` (imported on first use: matplotlib is heavy).
Units: lengths in the energy's reduced length unit, energies in its reduced energy unit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..energies.base import Energy
from .evaluate import evaluate
from .inputs import as_samples, resolve_energy
from .report import EvaluationReport, cell, fmt

if TYPE_CHECKING:  # annotations only; matplotlib is heavy
    from matplotlib.figure import Figure

__all__ = ["compare_with_md", "comparison_table"]


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
    from .. import plots

    if not (isinstance(labels, (tuple, list)) and len(labels) == 2 and all(isinstance(x, str) for x in labels)):
        raise ValueError(f"labels must be a pair of str, got {labels!r}")
    energy = resolve_energy(energy)
    s = as_samples(samples, energy, "samples")
    m = as_samples(md_run, energy, "md_run")
    r = as_samples(reference, energy, "reference") if reference is not None else None
    # compute missing energies once, so both evaluations and the plots reuse them
    before = energy.n_evaluations
    s, m = s.with_energies(energy), m.with_energies(energy)
    r = r.with_energies(energy) if r is not None else None
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
    return comparison_table(rep_idem, rep_md, labels), {"idem": rep_idem, "md": rep_md}, figures


def _share_cross_metrics(rep_idem: EvaluationReport, rep_md: EvaluationReport, labels: tuple[str, str]) -> None:
    """Without a reference the iDEM-vs-MD metrics are one comparison: give the MD report the same numbers."""
    own = {"energy_mean", "energy_std", "mode_coverage"}
    shared = {k: v for k, v in rep_idem.metrics.items() if k not in own}  # Metric is frozen: shared, not copied
    for k in ("reference_energy_mean", "reference_energy_std"):  # the iDEM report's reference is the MD set
        shared.pop(k, None)
    shared["reference_energy_mean"] = rep_idem.metrics["energy_mean"]
    shared["reference_energy_std"] = rep_idem.metrics["energy_std"]
    rep_md.metrics.update(shared)
    rep_md.n_reference = rep_idem.n_samples
    rep_idem.notes.append(f"no reference given: compared against the {labels[1]} samples")
    rep_md.notes.append(f"no reference given: compared against the {labels[0]} samples (the comparison metrics "
                        f"are the ones computed for the {labels[0]} report, {labels[0]} vs {labels[1]})")


def comparison_table(a: EvaluationReport, b: EvaluationReport, labels: tuple[str, str] = ("iDEM", "MD")) -> str:
    """Markdown table ``metric | <a> | <b>`` of two reports' :meth:`~EvaluationReport.rows` (``mean ± std``
    cells, ``-`` where a report lacks the row), their energy evaluations last."""
    rows_a = {name: (mean, std) for name, mean, std in a.rows()}
    rows_b = {name: (mean, std) for name, mean, std in b.rows()}
    names = list(rows_a) + [n for n in rows_b if n not in rows_a]
    lines = [f"| metric | {labels[0]} | {labels[1]} |", "| --- | --- | --- |"]
    for name in names:
        cells = [cell(*rows[name]) if name in rows else "-" for rows in (rows_a, rows_b)]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    evals = [rep.energy_evaluations.total for rep in (a, b)]
    lines.append(f"| energy_evaluations | {fmt(evals[0])} | {fmt(evals[1])} |")
    return "\n".join(lines)
