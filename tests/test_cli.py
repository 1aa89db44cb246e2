"""The ``idem-md`` command line: help, train (and resume), sample, md, evaluate, demo.

Commands run in-process through :func:`idem_md.cli.main` on the tiny DW-4 configuration;
``python -m idem_md`` is checked once through a subprocess.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from idem_md import IDEMSampler
from idem_md.checkpoint import load_checkpoint
from idem_md.cli import main
from idem_md.config import preset
from idem_md.io import Samples

TINY_NET = dict(hidden_irreps="8x0e + 2x1o", n_layers=1, n_radial_basis=4, radial_hidden=8, time_embedding_dim=8)
TINY = dict(batch_size=8, num_mc_samples=16, inner_steps=2, samples_per_outer=8, sde_steps=8, buffer_size=32,
            sample_batch_size=8, network_options=TINY_NET)
DEMO_REFERENCE = Path(__file__).resolve().parents[1] / "idem_md" / "data" / "dw4_md_reference.npz"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: The keys of a metrics.jsonl record, in order (as before the records were typed), then the writer's pid.
METRICS_KEYS = ["outer_iteration", "loss", "estimator_ess", "buffer_new_mean_energy", "buffer_new_median_energy",
                "energy_evaluations", "estimator_evaluations", "wall_time_s", "nonfinite_perturbations",
                "rejected_buffer_candidates", "new_samples"]


def tiny_sets(**overrides) -> list[str]:
    out: list[str] = []
    for key, value in {**TINY, **overrides}.items():
        if key == "network_options":
            out += [a for k, v in value.items() for a in ("--set", f"network_options.{k}={v}")]
        else:
            out += ["--set", f"{key}={value}"]
    return out


def train(run: Path, outer: int, *extra: str) -> int:
    return main(["train", "--system", "dw4", "--out", str(run), *tiny_sets(), *extra,
                 "--outer-iterations", str(outer), "--device", "cpu", "--quiet"])


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"idem-md {command}: error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A run directory holding a checkpoint after one outer iteration (made without the CLI)."""
    run = tmp_path_factory.mktemp("trained")
    IDEMSampler("dw4", config={**TINY, "outer_iterations": 1}, device="cpu").fit(
        progress=False, checkpoint_path=run / "checkpoint.pt")
    return run


@pytest.fixture(scope="module")
def md_file(tmp_path_factory) -> Path:
    """20 DW-4 MD samples written by ``idem-md md`` (the default MD settings; ~2-4 s)."""
    out = tmp_path_factory.mktemp("md") / "md.npz"
    assert main(["md", "--system", "dw4", "-n", "20", "--out", str(out), "--seed", "1", "--quiet"]) == 0
    return out


# ---------------------------------------------------------------- help
@pytest.mark.parametrize("command,options", [
    ("train", ["--system", "--out", "--config", "--set", "--outer-iterations", "--device", "--seed", "--nproc",
               "--quiet", "resumes"]),
    ("sample", ["RUN_DIR", "-n", "--out", "--steps", "--device", "--overwrite", ".xyz", ".dcd", ".npz"]),
    ("md", ["--system", "-n", "--out", "--seed", "--timestep", "--overwrite"]),
    ("evaluate", ["FILE", "--system", "--reference", "--json", "--plots", "--batches", "--batch-size",
                  "--overwrite"]),
    ("demo", ["--out", "--fast", "--overwrite"]),
])
def test_help_of_every_subcommand(command, options, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: idem-md {command}")
    for option in options:
        assert option in out, option


def test_top_level_help_lists_commands_and_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert all(c in out for c in ("train", "sample", "md", "evaluate", "demo"))
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("idem_md ")


def test_python_dash_m_idem_md_help():
    res = subprocess.run([sys.executable, "-m", "idem_md", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: idem-md") and "train" in res.stdout


# ---------------------------------------------------------------- train
def test_train_writes_run_directory_and_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, 2) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["system"] == "dw4" and cfg["config"]["batch_size"] == 8
    assert cfg["config"]["network_options"] == {**preset("dw4").network_options, **TINY_NET}  # merged
    assert load_checkpoint(run / "checkpoint.pt")["outer_iteration"] == 2
    records = metrics(run)
    assert [r["outer_iteration"] for r in records] == [1, 2]
    assert records[-1]["estimator_evaluations"] == 2 * 2 * 8 * 16
    assert (run / "plots" / "training_curves.png").read_bytes().startswith(PNG_MAGIC)
    capsys.readouterr()
    history = load_checkpoint(run / "checkpoint.pt")["history"]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    for line, record in zip(lines, history, strict=True):  # the checkpoint's records, each with the writer's pid
        pid = json.loads(line)["pid"]
        assert isinstance(pid, int) and line == json.dumps({**record, "pid": pid})
        assert list(record) == METRICS_KEYS

    assert train(run, 3) == 0  # a larger --outer-iterations resumes
    assert "resuming" in capsys.readouterr().err
    assert [r["outer_iteration"] for r in metrics(run)] == [1, 2, 3]
    payload = load_checkpoint(run / "checkpoint.pt")
    assert payload["outer_iteration"] == 3 and payload["counters"]["estimator"] == 3 * 2 * 8 * 16
    lines = (run / "metrics.jsonl").read_text().splitlines()  # rewritten from the checkpoint, then appended
    assert lines[:2] == [json.dumps(r) for r in history]
    assert lines[2] == json.dumps({**payload["history"][2], "pid": json.loads(lines[2])["pid"]})


def test_train_resume_with_other_settings_is_refused(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes((trained_run / "checkpoint.pt").read_bytes())
    before = (run / "checkpoint.pt").read_bytes()
    assert train(run, 3, "--set", "batch_size=4") == 2
    line = error_line(capsys, "train")
    assert "different config (batch_size)" in line
    assert train(run, 3, "--seed", "5") == 2
    assert "(seed)" in error_line(capsys, "train")
    assert (run / "checkpoint.pt").read_bytes() == before
    assert not (run / "metrics.jsonl").exists()


# ---------------------------------------------------------------- sample
@pytest.mark.parametrize("suffix,companions", [(".xyz", []), (".dcd", [".pdb", ".json"]), (".npz", [])])
def test_sample_writes_each_format_and_refuses_overwrite(suffix, companions, trained_run, tmp_path, capsys):
    out = tmp_path / f"x{suffix}"
    args = ["sample", str(trained_run), "-n", "5", "--out", str(out), "--quiet"]
    assert main(args) == 0
    for companion in companions:
        assert out.with_suffix(companion).is_file()
    got = Samples.load(out, n_particles=4, spatial_dim=2)
    assert len(got) == 5 and got.energies is not None and torch.isfinite(got.energies).all()
    assert got.metadata["system"] == "dw4" and got.metadata["source"] == "idem"
    expected = IDEMSampler.load(trained_run / "checkpoint.pt", device="cpu").sample(5, progress=False)
    assert torch.allclose(got.positions, expected.positions, atol=1e-5)  # reproducible from the checkpoint
    capsys.readouterr()

    before = {p: p.read_bytes() for p in [out, *(out.with_suffix(c) for c in companions)]}
    assert main(args) == 2
    assert re.search(r"exists; pass (--)?overwrite", error_line(capsys, "sample"))
    assert all(p.read_bytes() == b for p, b in before.items())
    assert main([*args, "--overwrite"]) == 0


@pytest.mark.parametrize("method", ["relax", "mala", "relax+mala", "smc"])
def test_sample_correct_writes_corrected_samples_with_their_figures(method, trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)  # smc saves the density model into the run
    out = tmp_path / "c.npz"
    args = ["sample", str(run), "-n", "16", "--out", str(out), "--quiet", "--correct", method, "--mala-steps", "3",
            "--relax-steps", "4", "--density-samples", "32", "--density-steps", "5"]
    assert main(args) == 0
    err = capsys.readouterr().err
    got = Samples.load(out, n_particles=4, spatial_dim=2)
    info = got.metadata["correction"]
    assert got.metadata["source"] == f"idem+{method}" and info["method"] == method
    assert info["n_energy_evaluations"] > 16 and f"correction {method}: " in err
    assert got.metadata["energy_evaluations"]["correction"] == info["n_energy_evaluations"]
    if method == "relax+mala":  # both stages counted: relax's evaluations are part of the total
        assert 0 < info["relax"]["n_energy_evaluations"] < info["n_energy_evaluations"]
    energy = IDEMSampler.load(run / "checkpoint.pt", device="cpu").energy
    assert torch.allclose(got.energies.double(), energy.energy(got.positions.double()), rtol=1e-4, atol=1e-4)
    if method == "smc":
        assert "fitting one on 32 samples" in err and load_checkpoint(run / "checkpoint.pt")["density"] is not None
        assert len(info["log_weights"]) == len(got) and math.isfinite(info["log_Z"]) and info["beta_schedule"][-1] == 1
        assert main([*args, "--overwrite"]) == 0
        assert "fitting" not in capsys.readouterr().err  # the saved density model is reused
        rep = tmp_path / "rep.json"
        assert main(["evaluate", str(out), "--system", "dw4", "--reference", str(out), "--run", str(run), "--json",
                     str(rep), "--likelihood-samples", "4", "--batches", "1", "--batch-size", "8"]) == 0
        assert "| importance_ess |" in capsys.readouterr().out
        assert json.loads(rep.read_text())["likelihood"]["model"] == "density_model"


# ---------------------------------------------------------------- md
def test_md_writes_samples_and_refuses_overwrite(md_file, capsys):
    got = Samples.load(md_file, n_particles=4, spatial_dim=2)
    assert len(got) == 20 and got.metadata["source"] == "md" and got.metadata["thinning"] >= 1
    assert torch.isfinite(got.energies).all()
    before = md_file.read_bytes()
    assert main(["md", "--system", "dw4", "-n", "5", "--out", str(md_file), "--quiet"]) == 2
    assert "pass --overwrite" in error_line(capsys, "md")
    assert md_file.read_bytes() == before


# ---------------------------------------------------------------- evaluate
def test_evaluate_writes_table_json_and_plots(trained_run, md_file, tmp_path, capsys):
    samples = tmp_path / "s.xyz"
    assert main(["sample", str(trained_run), "-n", "10", "--out", str(samples), "--quiet"]) == 0
    report, plots = tmp_path / "out.json", tmp_path / "plots"
    args = ["evaluate", str(samples), "--system", "dw4", "--reference", str(md_file), "--json", str(report),
            "--plots", str(plots), "--batches", "2", "--batch-size", "5"]
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "energy_w2" in out and "distance_w2" in out
    data = json.loads(report.read_text())
    assert data["system"] == "dw4" and data["n_samples"] == 10 and data["n_reference"] == 20
    assert {"energy_w2", "distance_w2", "energy_mean"} <= set(data["metrics"])
    for name in ("energy_histogram.png", "distance_histogram.png"):
        assert (plots / name).read_bytes().startswith(PNG_MAGIC)

    assert main(args) == 2  # the JSON report exists
    assert "pass --overwrite" in error_line(capsys, "evaluate")
    assert main([*args, "--overwrite"]) == 0


# ---------------------------------------------------------------- demo
@pytest.mark.skipif(not DEMO_REFERENCE.is_file(),
                    reason=f"the demo's bundled MD reference {DEMO_REFERENCE.name} is not in idem_md/data yet")
def test_demo_fast_writes_what_it_says(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--fast", "--out", str(out), "--quiet"]) == 0
    stdout = capsys.readouterr().out
    written = stdout.split("wrote:", 1)[1].split("checkpoint:", 1)[0].replace("\n", ",").split(",")
    files = [Path(p.strip()) for p in written if p.strip()]
    assert files and all(p.is_file() for p in files), files
    names = {p.name for p in files}
    assert {"idem_samples.dcd", "idem_samples.pdb", "idem_samples.xyz", "md_samples.dcd",
            "energy_histogram.png", "report.json"} <= names
    assert (out / "run" / "checkpoint.pt").is_file()
    report = json.loads((out / "report.json").read_text())
    assert {"idem", "md", "wall_time_s"} <= set(report)
    assert main(["demo", "--fast", "--out", str(out), "--quiet"]) == 2  # not empty: refused
    assert "pass --overwrite" in error_line(capsys, "demo")


def test_train_energy_budget_ends_training(tmp_path, capsys):
    run = tmp_path / "run"
    step = 8 * 16  # batch * K evaluations per inner step; 2 inner steps per outer iteration
    assert train(run, 50, "--energy-budget", "6.4e2") == 0  # 640 = 5 inner steps
    payload = load_checkpoint(run / "checkpoint.pt")
    assert payload["config"]["energy_budget"] == 640
    assert payload["counters"]["estimator"] == 5 * step and payload["outer_iteration"] == 3  # 2 + 2 + 1 steps
    assert train(run, 50, "--energy-budget", "1152") == 0  # a larger budget resumes the same run
    payload = load_checkpoint(run / "checkpoint.pt")
    assert payload["counters"]["estimator"] == 9 * step and payload["config"]["energy_budget"] == 1152
    assert "resuming" in capsys.readouterr().err
    assert train(tmp_path / "r2", 1, "--energy-budget", "-3") == 2
    assert "--energy-budget must be a positive whole number" in error_line(capsys, "train")


def test_train_cpu_preset_applies_the_shrunken_settings_and_refuses_systems_without_one(tmp_path, capsys):
    from idem_md.config import CPU_PRESETS, preset

    cfg = preset("lj13", cpu=True, batch_size=8)
    assert cfg.batch_size == 8 and cfg.sde_steps == CPU_PRESETS["lj13"]["sde_steps"] != preset("lj13").sde_steps
    assert cfg.network_options["hidden_irreps"] == "16x0e + 4x1o" and cfg.sigma_max == preset("lj13").sigma_max
    assert preset("lj55", cpu=True).network_options["radial_max"] == 8.0  # the paper preset's options are kept
    with pytest.raises(ValueError, match="no CPU preset for system 'gmm40'"):
        preset("gmm40", cpu=True)
    assert main(["train", "--system", "gmm40", "--cpu-preset", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "--cpu-preset: cpu=True: no CPU preset for system 'gmm40'" in error_line(capsys, "train")
    assert not (tmp_path / "r").exists()
