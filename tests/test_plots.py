"""Figures (idem_md.plots): artists, labels, PNG output, no pyplot state."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from idem_md import get_energy
from idem_md.io import Samples
from idem_md.plots import distance_histogram, energy_histogram, gmm_scatter, save_figure, training_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _legend_labels(ax) -> list[str]:
    return ax.get_legend_handles_labels()[1]


def _assert_png(path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC


def test_energy_histogram_step_lines_per_set(tmp_path):
    rng = np.random.default_rng(0)
    dw4 = get_energy("dw4")
    no_energies = Samples(torch.randn(50, 4, 2, generator=torch.Generator().manual_seed(0)) * 2.0)
    data = {"reference": rng.normal(-22.0, 2.0, 400), "iDEM": torch.as_tensor(rng.normal(-21.0, 2.5, 300)),
            "MD": no_energies}
    fig = energy_histogram(data, bins=30, energy=dw4)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.patches) == 3  # one step polygon per set
    labels = _legend_labels(ax)
    assert [lab.split(" (")[0] for lab in labels] == ["reference", "iDEM", "MD"]
    assert labels[0].startswith("reference (N=400")
    assert ax.get_xlabel().startswith("energy") and ax.get_ylabel() == "density"
    _assert_png(save_figure(fig, tmp_path / "energy.png"))
    with pytest.raises(ValueError, match="carries no energies; pass energy="):
        energy_histogram({"MD": no_energies})


def test_energy_histogram_is_density_normalised_and_reports_outliers():
    e = np.concatenate([np.random.default_rng(1).normal(size=990), np.full(10, 1e5)])
    fig = energy_histogram({"model": e}, bins=40, range=(-5.0, 5.0))
    ax = fig.axes[0]
    (label,) = _legend_labels(ax)
    assert "1.0% outside" in label
    poly = ax.patches[0].get_xy()  # step outline: integrate the heights over the bins
    xs, ys = poly[:, 0], poly[:, 1]
    area = sum((xs[i + 1] - xs[i]) * ys[i] for i in range(len(xs) - 1) if ys[i] == ys[i + 1] and xs[i + 1] > xs[i])
    assert area == pytest.approx(0.99, abs=0.01)  # the mass outside the range is not rescaled away
    with pytest.raises(ValueError, match="range"):
        energy_histogram({"model": e}, range=(1.0, 1.0))
    with pytest.raises(ValueError, match="bins"):
        energy_histogram({"model": e}, bins=0)
    with pytest.raises(ValueError, match="datasets must be a non-empty dict"):
        energy_histogram({})


def test_distance_histogram(tmp_path):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(30, 4, 2, generator=g)
    b = Samples(torch.randn(20, 4, 2, generator=g) * 2.0)
    fig = distance_histogram({"a": a, "b": b, "flat": a.reshape(30, 8).numpy()}, n_particles=4, spatial_dim=2, bins=50)
    ax = fig.axes[0]
    assert len(ax.patches) == 3
    assert _legend_labels(ax)[0].startswith("a (N=180")  # 30 configurations x 6 pairs
    _assert_png(save_figure(fig, tmp_path / "dist.png"))
    with pytest.raises(ValueError, match="n_particles >= 2"):
        distance_histogram({"a": a}, n_particles=1, spatial_dim=8)
    with pytest.raises(ValueError, match=r"datasets\['a'\]"):
        distance_histogram({"a": a}, n_particles=3, spatial_dim=2)


def test_gmm_scatter(tmp_path):
    gmm = get_energy("gmm40")
    x = gmm.sample(300, generator=torch.Generator().manual_seed(0))
    fig = gmm_scatter(x, gmm.means, max_points=100)
    ax = fig.axes[0]
    assert len(ax.collections) == 2
    assert ax.collections[0].get_offsets().shape == (100, 2)
    np.testing.assert_allclose(ax.collections[1].get_offsets(), gmm.means.numpy(), rtol=1e-6)
    assert _legend_labels(ax) == ["samples (N=100)", "mode means (M=40)"]
    _assert_png(save_figure(fig, tmp_path / "gmm.png"))
    # drawing into a given axes returns that axes' figure
    host = Figure()
    target = host.add_subplot()
    assert gmm_scatter(Samples(x[:, None, :]), gmm.means, ax=target) is host and len(target.collections) == 2
    with pytest.raises(ValueError, match="2D points"):
        gmm_scatter(torch.zeros(5, 3), gmm.means)


def test_training_curves(tmp_path):
    history = [{"outer_iteration": i + 1, "loss": 10.0 / (i + 1), "estimator_ess": 0.5,
                "buffer_new_mean_energy": 5e4 / (i + 1) - 20.0, "energy_evaluations": 1000 * (i + 1)}
               for i in range(6)]
    history[2]["buffer_new_mean_energy"] = float("nan")  # pDEM-style gap
    fig = training_curves(history)
    ax_loss, ax_e = fig.axes
    assert len(ax_loss.lines) == 1 and len(ax_e.lines) == 1
    np.testing.assert_array_equal(ax_loss.lines[0].get_xdata(), np.arange(1, 7))
    assert ax_loss.get_yscale() == "log" and ax_e.get_yscale() == "symlog"
    assert ax_e.get_xlabel() == "outer iteration"
    by_evals = training_curves(history, x="energy_evaluations")
    np.testing.assert_array_equal(by_evals.axes[1].lines[0].get_xdata(), 1000 * np.arange(1, 7))
    assert by_evals.axes[1].get_xlabel() == "energy evaluations"
    _assert_png(save_figure(fig, tmp_path / "train.png"))

    class FakeSampler:
        pass

    sampler = FakeSampler()
    sampler.history = history
    assert len(training_curves(sampler).axes) == 2
    with pytest.raises(ValueError, match="history is empty"):
        training_curves([])
    with pytest.raises(ValueError, match=r"history\[0\] must be a record or dict with fields"):
        training_curves([{"loss": 1.0}])
    with pytest.raises(ValueError, match=r"history\[0\] .* got object"):
        training_curves([object()])


def test_training_curves_reads_typed_records_without_the_dict_view():
    import dataclasses
    import warnings

    from idem_md._records import Record

    @dataclasses.dataclass(frozen=True)
    class Rec(Record):  # the shape of IDEMSampler.history's records
        outer_iteration: int
        loss: float
        buffer_new_mean_energy: float
        buffer_new_median_energy: float
        energy_evaluations: int

    history = [Rec(i + 1, 1.0 / (i + 1), -10.0 - i, -11.0 - i, 100 * (i + 1)) for i in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # attributes, not rec["loss"]
        fig = training_curves(history, x="energy_evaluations")
    ax_loss, ax_e = fig.axes
    np.testing.assert_array_equal(ax_loss.lines[0].get_xdata(), [100, 200, 300, 400])
    np.testing.assert_allclose(ax_loss.lines[0].get_ydata(), [1.0, 0.5, 1 / 3, 0.25])
    np.testing.assert_allclose(ax_e.lines[1].get_ydata(), [-11.0, -12.0, -13.0, -14.0])  # the median line
    with pytest.raises(ValueError, match="x must be"):
        training_curves(history, x="wall_time")


def test_save_figure_refuses_overwrite_and_bad_paths(tmp_path):
    fig = energy_histogram({"e": np.arange(10.0)}, bins=5)
    path = save_figure(fig, tmp_path / "f.png")
    size = path.stat().st_size
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_figure(fig, path)
    assert save_figure(fig, path, overwrite=True, dpi=50) == path and path.stat().st_size != size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]  # no temporary file left behind
    assert (save_figure(fig, tmp_path / "f.svg")).read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match="suffix"):
        save_figure(fig, tmp_path / "f.docx")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_figure(fig, tmp_path / "missing" / "f.png")
    with pytest.raises(TypeError, match="fig must be"):
        save_figure("figure", tmp_path / "g.png")


def test_plots_never_touch_pyplot(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from idem_md import plots
        fig = plots.energy_histogram({{"e": np.arange(100.0)}})
        plots.training_curves([{{"outer_iteration": 1, "loss": 1.0, "buffer_new_mean_energy": 0.0}}])
        plots.save_figure(fig, {str(tmp_path / 'x.png')!r})
        assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY")}
    env_run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert env_run.returncode == 0, env_run.stderr
    assert (tmp_path / "x.png").read_bytes()[:8] == PNG_MAGIC
