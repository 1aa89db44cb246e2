"""Matplotlib figures for sample sets and training runs, without pyplot state.

Every function builds a :class:`matplotlib.figure.Figure` directly (no
``pyplot``, so no global figure registry, no GUI backend and nothing shown),
or draws into a given ``ax`` and returns its figure. Save with
:func:`save_figure`. Lengths are in the energy's reduced length unit and
energies in its reduced energy unit.

Examples
--------
>>> import numpy as np
>>> fig = energy_histogram({"model": np.random.default_rng(0).normal(size=500)}, bins=20)
>>> len(fig.axes)
1
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from ._files import staged_files
from .samples.energies import compute_energies

if TYPE_CHECKING:  # matplotlib is imported lazily: `import idem_md` must not pull it in
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .energies.base import Energy

__all__ = [
    "energy_histogram",
    "distance_histogram",
    "gmm_scatter",
    "training_curves",
    "save_figure",
]

#: Default histogram range keeps the central 99% of every data set (union of their
#: 0.5-99.5 percentile intervals), so a few early-training samples with energies of
#: 1e5 do not squash the interesting region into one bin.
DEFAULT_RANGE_PERCENTILES: tuple[float, float] = (0.5, 99.5)
_SYMLOG_ABOVE = 1e3  # |energy| beyond this in a training curve switches the axis to symlog


# ---------------------------------------------------------------- histograms
def energy_histogram(
    datasets: Mapping[str, Any],
    bins: int = 100,
    ax: "Axes | None" = None,
    *,
    energy: "Energy | None" = None,
    range: tuple[float, float] | None = None,  # noqa: A002 - mirrors numpy.histogram
) -> "Figure":
    """Density-normalised step histograms of the energies of several sample sets on one axis.

    Parameters
    ----------
    datasets : mapping label -> energies or samples
        ``(N,)`` energy arrays/tensors, :class:`~idem_md.io.Samples` or
        :class:`~idem_md.md.MDRun` (their stored energies). Samples without
        energies need ``energy``.
    bins : int
        Equal-width bins shared by all sets.
    ax : matplotlib Axes, optional
        Draw here; default a new figure.
    energy : Energy, optional
        Computes energies for samples that carry none (counted by the energy).
    range : (float, float), optional
        Histogram range in reduced energy units. Default: the union of every
        set's 0.5-99.5 percentile interval; the legend states the fraction of a
        set outside the range whenever it is not zero.

    Returns
    -------
    matplotlib.figure.Figure
    """
    series = {label: _energies(v, label, energy) for label, v in _check_datasets(datasets).items()}
    fig, ax = _figure_and_axes(ax)
    _step_histograms(ax, series, bins, range)
    ax.set_xlabel("energy (reduced units)")
    ax.set_ylabel("density")
    ax.set_title("energy distribution")
    return fig


def distance_histogram(
    datasets: Mapping[str, Any],
    n_particles: int,
    spatial_dim: int,
    bins: int = 200,
    ax: "Axes | None" = None,
    *,
    range: tuple[float, float] | None = None,  # noqa: A002 - mirrors numpy.histogram
) -> "Figure":
    """Density-normalised step histograms of pooled interatomic distances of several sample sets.

    Parameters
    ----------
    datasets : mapping label -> configurations
        ``(N, n, d)`` or flat ``(N, n * d)`` arrays/tensors, Samples or MDRun.
    n_particles, spatial_dim : int
        Shape of one configuration (``n_particles >= 2``).
    bins : int
        Equal-width bins shared by all sets.
    ax : matplotlib Axes, optional
        Draw here; default a new figure.
    range : (float, float), optional
        Range in reduced length units (default as in :func:`energy_histogram`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .metrics import interatomic_distances

    for name, v in (("n_particles", n_particles), ("spatial_dim", spatial_dim)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if n_particles < 2:
        raise ValueError(f"distance_histogram needs n_particles >= 2, got {n_particles}")
    series = {}
    for label, v in _check_datasets(datasets).items():
        x = _configurations(v, label)
        try:
            series[label] = interatomic_distances(x, n_particles, spatial_dim).ravel()
        except ValueError as err:
            raise ValueError(f"datasets[{label!r}]: {err}") from err
    fig, ax = _figure_and_axes(ax)
    _step_histograms(ax, series, bins, range)
    ax.set_xlabel("interatomic distance (reduced units)")
    ax.set_ylabel("density")
    ax.set_title("interatomic distance distribution")
    return fig


def gmm_scatter(
    samples: Any,
    means: Any,
    ax: "Axes | None" = None,
    *,
    max_points: int | None = 5000,
    seed: int = 0,
    label: str = "samples",
) -> "Figure":
    """Scatter of 2D samples with the mixture's mode centres on top.

    Parameters
    ----------
    samples : array, tensor or Samples
        ``(N, 2)`` (or ``(N, 1, 2)``) points.
    means : array or tensor
        ``(M, 2)`` mode centres.
    ax : matplotlib Axes, optional
        Draw here; default a new square figure.
    max_points : int or None
        Plot a seeded random subset of at most this many samples (None: all).
    seed : int
        Seed of that subset.
    label : str
        Legend entry of the samples.

    Returns
    -------
    matplotlib.figure.Figure
        Two scatter collections: the samples, then the means.
    """
    x = _configurations(samples, "samples")
    x = x.reshape(len(x), -1)
    mu = _as_numpy(means, "means")
    if x.shape[1] != 2 or mu.ndim != 2 or mu.shape[1] != 2:
        raise ValueError(f"gmm_scatter needs 2D points: samples (N, 2) and means (M, 2), got samples with "
                         f"{x.shape[1]} coordinates and means of shape {tuple(mu.shape)}")
    if max_points is not None:
        if isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer)) or max_points < 1:
            raise ValueError(f"max_points must be a positive int or None, got {max_points!r}")
        if len(x) > max_points:
            x = x[np.sort(np.random.default_rng(seed).choice(len(x), int(max_points), replace=False))]
    fig, ax = _figure_and_axes(ax, figsize=(5.5, 5.5))
    ax.scatter(x[:, 0], x[:, 1], s=3, alpha=0.4, linewidths=0, label=f"{label} (N={len(x)})")
    ax.scatter(mu[:, 0], mu[:, 1], s=40, marker="x", c="k", label=f"mode means (M={len(mu)})")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.legend(loc="upper right", fontsize="small")
    return fig


def training_curves(history: Any, x: str = "outer_iteration") -> "Figure":
    """Training loss and mean energy of the new buffer samples against outer iteration or energy evaluations.

    Parameters
    ----------
    history : list of records or dicts, or IDEMSampler
        :attr:`IDEMSampler.history` records (fields ``outer_iteration``,
        ``loss``, ``buffer_new_mean_energy``, ``energy_evaluations``; and
        ``buffer_new_median_energy`` when present), the same as dicts (e.g. the
        lines of a run's ``metrics.jsonl``), or the sampler itself.
    x : {"outer_iteration", "energy_evaluations"}
        Quantity on the horizontal axis.

    Returns
    -------
    matplotlib.figure.Figure
        Two stacked axes sharing x: the loss (log scale when all positive) and
        the new-sample energy, mean and (when recorded) median (symlog when it
        exceeds 1e3 in magnitude). Non-finite
        values (e.g. NaN energies in pDEM mode) leave gaps.
    """
    records = getattr(history, "history", history)
    if not isinstance(records, Sequence) or isinstance(records, (str, bytes)):
        raise TypeError(f"history must be a list of records or dicts (IDEMSampler.history) or a sampler, got "
                        f"{type(history).__name__}")
    if len(records) == 0:
        raise ValueError("history is empty: train for at least one outer iteration first")
    if x not in ("outer_iteration", "energy_evaluations"):
        raise ValueError(f"x must be 'outer_iteration' or 'energy_evaluations', got {x!r}")
    need = {x, "loss", "buffer_new_mean_energy"}
    for i, rec in enumerate(records):
        have = set(rec) if isinstance(rec, Mapping) else {k for k in need if hasattr(rec, k)}
        if not need <= have:
            shown = sorted(have) if isinstance(rec, Mapping) else type(rec).__name__
            raise ValueError(f"history[{i}] must be a record or dict with fields {sorted(need)}, got {shown}")
    xs = np.array([float(_field(r, x)) for r in records])
    loss = np.array([_float_or_nan(_field(r, "loss")) for r in records])
    e_new = np.array([_float_or_nan(_field(r, "buffer_new_mean_energy")) for r in records])
    e_median = np.array([_float_or_nan(_field(r, "buffer_new_median_energy", float("nan"))) for r in records])

    fig = _new_figure(figsize=(6.5, 6.0))
    ax_loss, ax_e = fig.subplots(2, 1, sharex=True)
    ax_loss.plot(xs, loss, marker="o", ms=3, label="loss")
    ax_loss.set_ylabel("DEM loss")
    finite_loss = loss[np.isfinite(loss)]
    if finite_loss.size and (finite_loss > 0).all():
        ax_loss.set_yscale("log")
    ax_e.plot(xs, e_new, marker="o", ms=3, color="C1", label="mean energy of new buffer samples")
    ax_e.set_ylabel("energy (reduced units)")
    if np.isfinite(e_median).any():  # the mean is dominated by rare near-overlaps; the median shows the bulk
        ax_e.plot(xs, e_median, marker="s", ms=3, color="C2", label="median energy of new buffer samples")
    finite_e = np.concatenate([e_new[np.isfinite(e_new)], e_median[np.isfinite(e_median)]])
    if finite_e.size and np.abs(finite_e).max() > _SYMLOG_ABOVE:
        ax_e.set_yscale("symlog")
    ax_e.set_xlabel("outer iteration" if x == "outer_iteration" else "energy evaluations")
    for a in (ax_loss, ax_e):
        a.legend(loc="upper right", fontsize="small")
        a.grid(alpha=0.3)
    return fig


# ---------------------------------------------------------------- saving
def save_figure(fig: "Figure", path: str | os.PathLike, overwrite: bool = False, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` atomically; the suffix picks the format (``.png``, ``.pdf``, ``.svg``, ...).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or PathLike
        Target file; its directory must exist.
    overwrite : bool
        Replace an existing file; otherwise raise :class:`FileExistsError`.
    dpi : int
        Resolution of raster formats.

    Returns
    -------
    Path
        The file written.
    """
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib.figure.Figure, got {type(fig).__name__}")
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(f"path {str(path)!r} has suffix {path.suffix!r}; use one of "
                         f"{sorted('.' + k for k in supported)}")
    with staged_files([path], overwrite) as (tmp,):
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    return path


# ---------------------------------------------------------------- helpers
def _new_figure(figsize: tuple[float, float] = (6.5, 4.0)) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _figure_and_axes(ax: Any, figsize: tuple[float, float] = (6.5, 4.0)) -> tuple["Figure", "Axes"]:
    if ax is None:
        fig = _new_figure(figsize)
        return fig, fig.add_subplot()
    from matplotlib.axes import Axes

    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax.figure, ax


def _check_datasets(datasets: Any) -> dict[str, Any]:
    if not isinstance(datasets, Mapping) or len(datasets) == 0:
        raise ValueError(f"datasets must be a non-empty dict label -> data, got {type(datasets).__name__} "
                         f"{'(empty)' if isinstance(datasets, Mapping) else ''}".rstrip())
    bad = [k for k in datasets if not isinstance(k, str)]
    if bad:
        raise TypeError(f"datasets labels must be str, got {bad[:3]!r}")
    return dict(datasets)


def _as_numpy(v: Any, name: str) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        a = v.detach().cpu().double().numpy()
    else:
        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a numeric array or tensor, got {type(v).__name__}") from err
    if a.ndim == 0 or a.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values ({int((~np.isfinite(a)).sum())} entries)")
    return a


def _energies(v: Any, label: str, energy: Any) -> np.ndarray:
    name = f"datasets[{label!r}]"
    if hasattr(v, "positions"):  # Samples or MDRun
        e = getattr(v, "energies", None)
        if e is None:
            if energy is None:
                raise ValueError(f"{name} carries no energies; pass energy= to compute them")
            e = compute_energies(v.positions, energy)  # (N,), counted by the energy
        v = e
    a = _as_numpy(v, name)
    if a.ndim != 1:
        raise ValueError(f"{name} must be (N,) energies or samples, got an array of shape {a.shape}")
    return a


def _configurations(v: Any, name: str) -> np.ndarray:
    if hasattr(v, "positions"):  # Samples or MDRun
        v = v.positions
    return _as_numpy(v, name if name == "samples" else f"datasets[{name!r}]")


def _common_range(series: Mapping[str, np.ndarray], rng: Any) -> tuple[float, float]:
    if rng is not None:
        lo, hi = (float(r) for r in rng)
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ValueError(f"range must be a finite (low, high) with high > low, got {rng!r}")
        return lo, hi
    lo = min(float(np.percentile(a, DEFAULT_RANGE_PERCENTILES[0])) for a in series.values())
    hi = max(float(np.percentile(a, DEFAULT_RANGE_PERCENTILES[1])) for a in series.values())
    if hi <= lo:  # every value equal
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def _step_histograms(ax: "Axes", series: Mapping[str, np.ndarray], bins: int, rng: Any) -> None:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    lo, hi = _common_range(series, rng)
    edges = np.linspace(lo, hi, int(bins) + 1)
    for label, a in series.items():
        inside = (a >= lo) & (a <= hi)
        outside = 1.0 - inside.mean()
        text = f"{label} (N={len(a)}" + (f", {100 * outside:.1f}% outside)" if outside > 0 else ")")
        # density over all N, so a set with mass outside the range shows that loss instead of being rescaled
        weights = np.full(int(inside.sum()), 1.0 / (len(a) * (edges[1] - edges[0])))
        ax.hist(a[inside], bins=edges, weights=weights, histtype="step", linewidth=1.5, label=text)
    ax.legend(fontsize="small")


def _field(rec: Any, name: str, default: Any = None) -> Any:
    """``rec[name]`` of a dict, ``rec.name`` of a record (``default`` when absent)."""
    if isinstance(rec, Mapping):
        return rec.get(name, default)
    return getattr(rec, name, default)


def _float_or_nan(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")
