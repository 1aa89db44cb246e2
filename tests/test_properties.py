"""Property-based tests (hypothesis): bad input anywhere gives a clear TypeError/ValueError
naming the culprit, never a crash from deep inside torch, numpy or a file parser.

Covers ``Energy.energy`` / ``energy_and_forces`` on arbitrary tensors, every ``IDEMConfig``
field, ``Samples.load`` on damaged files and ``idem-md`` with bad arguments. Examples are
derandomised (reproducible) and few, so the file runs in well under a minute.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idem_md import IDEMConfig, IDEMSampler, get_energy
from idem_md.cli import main
from idem_md.io import Samples

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
FEW = settings(PROPERTY, max_examples=25)

SYSTEMS = {name: get_energy(name) for name in ("gmm40", "dw4", "lj13")}
FLOATS = (torch.float32, torch.float64)
HALF = (torch.float16, torch.bfloat16)
DTYPES = (*FLOATS, *HALF, torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64, torch.complex128)
SPECIALS = (0.0, -0.0, 1.0, 1e-300, 1e30, 1e300, -1e300, math.nan, math.inf, -math.inf)
NAMES_X = re.compile(r"\bx\b")  # the message names the argument


# ---------------------------------------------------------------- energies
@st.composite
def energy_inputs(draw, energy):
    """Tensors of random rank, shape, dtype and values, often with the valid layout."""
    layout = draw(st.sampled_from(["flat", "particles", "random"]))
    batch = draw(st.integers(0, 4))
    if layout == "flat":
        shape = (batch, energy.dim)
    elif layout == "particles":
        shape = (batch, energy.n_particles, energy.spatial_dim)
    else:
        shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=4)))
    dtype = draw(st.sampled_from(DTYPES))
    scale = draw(st.sampled_from([1.0, 1e3, 1e30, 1e300]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    flat = x.reshape(-1)
    for _ in range(draw(st.integers(0, 3)) if flat.numel() else 0):
        flat[draw(st.integers(0, flat.numel() - 1))] = draw(st.sampled_from(SPECIALS))
    return x.to(dtype), scale


def _is_valid(energy, x: torch.Tensor) -> bool:
    n, d = energy.n_particles, energy.spatial_dim
    layout_ok = (x.ndim == 2 and x.shape[1] == n * d) or (x.ndim == 3 and tuple(x.shape[1:]) == (n, d))
    return layout_ok and x.dtype in FLOATS and bool(torch.isfinite(x).all())


@pytest.mark.parametrize("name", sorted(SYSTEMS))
@PROPERTY
@given(data=st.data())
def test_energy_gives_B_results_or_names_x(name, data):
    energy = SYSTEMS[name]
    x, scale = data.draw(energy_inputs(energy))
    valid = _is_valid(energy, x)
    for method in ("energy", "energy_and_forces"):
        try:
            out = getattr(energy, method)(x)
        except (TypeError, ValueError) as err:
            assert not valid, f"{method} refused valid input {tuple(x.shape)} {x.dtype}: {err}"
            assert NAMES_X.search(str(err)), str(err)
            continue
        assert valid or x.dtype in HALF, f"{method} accepted {tuple(x.shape)} {x.dtype}"
        e, f = out if method == "energy_and_forces" else (out, None)
        assert e.shape == (x.shape[0],) and e.dtype == x.dtype
        if f is not None:
            assert f.shape == x.shape and f.dtype == x.dtype
        # Moderate finite coordinates give finite energies and forces; overflowing ones may
        # give inf (or NaN), which the estimator and the buffer treat as zero weight / reject.
        if valid and scale <= 1e3 and bool((x.abs() <= 1e3).all()):
            assert torch.isfinite(e).all(), (method, e)
            if f is not None:
                assert torch.isfinite(f).all(), (method, f)


@pytest.mark.parametrize("name", sorted(SYSTEMS))
@pytest.mark.parametrize("x", [None, "x", 3.0, [[0.0] * 8], np.zeros((2, 8))], ids=lambda v: type(v).__name__)
def test_energy_non_tensor_input_is_a_type_error_naming_x(name, x):
    for method in ("energy", "energy_and_forces"):
        with pytest.raises(TypeError, match=r"\bx\b must be a torch.Tensor"):
            getattr(SYSTEMS[name], method)(x)


@pytest.mark.parametrize("name", ["gmm40", "dw4", "lj13"])
def test_empty_batch_gives_empty_results(name):
    energy = SYSTEMS[name]
    for x in (torch.zeros(0, energy.dim), torch.zeros(0, energy.n_particles, energy.spatial_dim)):
        e, f = energy.energy_and_forces(x)
        assert energy.energy(x).shape == (0,) and e.shape == (0,) and f.shape == x.shape


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_half_precision_is_refused_or_computed_accurately(dtype):
    lj = SYSTEMS["lj13"]
    x = torch.randn(5, 13, 3, generator=torch.Generator().manual_seed(0))
    reference, _ = lj.energy_and_forces(x)  # float32, finite
    assert torch.isfinite(reference).all()
    try:
        e, f = lj.energy_and_forces(x.to(dtype))
    except TypeError as err:
        assert NAMES_X.search(str(err)) and "float32" in str(err)
        return
    assert torch.isfinite(f).all()
    assert torch.allclose(e.float(), reference, rtol=1e-2)


# ---------------------------------------------------------------- config
FIELDS = [f.name for f in dataclasses.fields(IDEMConfig)]
ODD_VALUES = st.sampled_from([
    -1, 0, 1, 3, 2**31, 2**70, -1e9, 0.0, 0.5, 1e-320, 1e308, math.nan, math.inf, -math.inf,
    "abc", "1", "", [], [1], (2,), None, True, False, {}, {"n_layers": 1}, b"x", object(),
])


@PROPERTY
@given(field=st.sampled_from(FIELDS), value=ODD_VALUES)
def test_config_field_is_valid_or_error_names_it(field, value):
    try:
        cfg = IDEMConfig().replace(**{field: value})
    except (TypeError, ValueError) as err:
        assert field in str(err), f"{field}={value!r}: {err}"
        return
    got = getattr(cfg, field)
    assert got is value or got == value
    cfg.validate()
    assert IDEMConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict() or _has_nan(cfg.to_dict())


def _has_nan(d: dict) -> bool:
    return any(isinstance(v, float) and math.isnan(v) for v in d.values())


@FEW
@given(key=st.text(min_size=1, max_size=12).filter(lambda k: k not in FIELDS), value=ODD_VALUES)
def test_unknown_config_key_is_named(key, value):
    with pytest.raises(ValueError, match=re.escape(repr(key))):
        IDEMConfig.from_dict({key: value})


def test_seed_out_of_torch_range_is_named():
    with pytest.raises(ValueError, match="seed"):
        IDEMConfig(seed=2**64)


# ---------------------------------------------------------------- loaders
@pytest.fixture(scope="module")
def sample_files(tmp_path_factory):
    """A good DW-4 file of every format, with its bytes and contents."""
    root = tmp_path_factory.mktemp("samples")
    energy = SYSTEMS["dw4"]
    x = torch.randn(6, 4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    good = Samples.from_array(x, 4, 2, energy=energy, centre=True, metadata={"system": "dw4"})
    files = {}
    for suffix in (".npz", ".xyz", ".dcd"):
        path = root / f"good{suffix}"
        good.save(path)
        files[suffix] = path
    return root, files, good


def _load_or_refuse(path: Path, good: Samples, tol: float) -> None:
    """Loading a damaged file either refuses with ValueError or gives back the original samples."""
    try:
        got = Samples.load(path, n_particles=4, spatial_dim=2)
    except ValueError as err:
        assert str(path) in str(err) or path.name in str(err), str(err)
        return
    assert len(got) == len(good)
    assert torch.allclose(got.positions.double(), good.positions.double(), atol=tol)


@pytest.mark.parametrize("suffix", [".npz", ".xyz", ".dcd"])
@FEW
@given(data=st.data())
def test_truncated_sample_file_is_refused_never_garbage(sample_files, suffix, data):
    root, files, good = sample_files
    blob = files[suffix].read_bytes()
    cut = data.draw(st.integers(0, len(blob) - 1), label="cut")
    target = root / f"cut{suffix}"
    target.write_bytes(blob[:cut])
    if suffix == ".dcd":  # the topology and sidecar stay intact beside it
        for side in (".pdb", ".json"):
            target.with_suffix(side).write_bytes(files[suffix].with_suffix(side).read_bytes())
    _load_or_refuse(target, good, tol=1e-5)


@pytest.mark.parametrize("suffix", [".npz", ".xyz", ".dcd"])
@FEW
@given(blob=st.one_of(st.binary(max_size=512), st.sampled_from(["npz", "xyz", "dcd", "json", "pdb"])))
def test_random_or_wrong_format_bytes_are_refused(sample_files, suffix, blob):
    root, files, _ = sample_files
    if isinstance(blob, str):  # another format's file under this suffix
        source = files.get(f".{blob}") or files[".dcd"].with_suffix(f".{blob}")
        blob = source.read_bytes()
    target = root / f"junk{suffix}"
    target.write_bytes(blob)
    if suffix == ".dcd":
        for side in (".pdb", ".json"):
            target.with_suffix(side).write_bytes(files[".dcd"].with_suffix(side).read_bytes())
    if blob == files[suffix].read_bytes():
        return  # the good file itself
    with pytest.raises(ValueError):
        Samples.load(target, n_particles=4, spatial_dim=2)


@pytest.mark.parametrize("suffix", [".npz", ".xyz", ".dcd"])
def test_damaged_dcd_companions_and_empty_files_are_refused(sample_files, suffix, tmp_path):
    _, files, _ = sample_files
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    if suffix == ".dcd":
        empty.with_suffix(".pdb").write_bytes(files[".dcd"].with_suffix(".pdb").read_bytes())
    with pytest.raises(ValueError, match="empty|not a readable|truncated"):
        Samples.load(empty)
    if suffix == ".dcd":
        copy = tmp_path / "copy.dcd"
        copy.write_bytes(files[".dcd"].read_bytes())
        copy.with_suffix(".pdb").write_bytes(files[".dcd"].with_suffix(".pdb").read_bytes())
        copy.with_suffix(".json").write_bytes(b"\x00\xff not json")
        with pytest.raises(ValueError, match="sidecar"):
            Samples.load(copy)
        copy.with_suffix(".json").unlink()
        copy.with_suffix(".pdb").unlink()
        with pytest.raises(FileNotFoundError, match="topology"):
            Samples.load(copy)


@pytest.mark.parametrize("suffix", [".npz", ".xyz", ".dcd"])
@pytest.mark.parametrize("system", ["lj13", "dw8"])
def test_file_of_another_system_is_refused(sample_files, suffix, system):
    _, files, _ = sample_files
    other = get_energy(system)
    with pytest.raises(ValueError, match="particles per configuration"):
        Samples.load(files[suffix], n_particles=other.n_particles, spatial_dim=other.spatial_dim)


# ---------------------------------------------------------------- CLI
def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("idem-md")]
    assert len(lines) == 1 and lines[0].startswith(f"idem-md {command}: error: "), err
    return lines[0]


ALWAYS_BAD_SETS = ["batch_size=-3", "nonsense=1", "lr=abc", "lr=NaN", "network=transformer", "seed=-1",
                   "pdem=maybe", "inner_steps=2.5", "score_clip=0", "loss_weighting=[]", "lr", "=1",
                   "a.b=1", "network_options=3", "network_options.n_layers=-1", "network_options.bogus=1",
                   "sigma_min=-1", "energy_budget=0", "checkpoint_every=none"]
OTHER_SETS = ["batch_size=8", "lr=1e-4", "num_mc_samples=abc", "sde_steps=0", "diffusion_scale=0",
              "network_options.n_layers=1", "score_clip=none", "buffer_size=1e3", "seed=3", "pdem=true"]


@settings(FEW, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(bad=st.sampled_from(ALWAYS_BAD_SETS), extra=st.lists(st.sampled_from(OTHER_SETS), max_size=3))
def test_cli_train_bad_set_values_exit_2_with_one_line(tmp_path_factory, capsys, bad, extra):
    run = tmp_path_factory.getbasetemp() / "never_created"
    args = ["train", "--system", "dw4", "--out", str(run), "--quiet", "--device", "cpu"]
    for item in [*extra, bad]:  # the bad item last, so that it is not overridden
        args += ["--set", item]
    assert main(args) == 2
    _one_line_error(capsys, "train")
    assert not run.exists()  # nothing written for a refused run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    IDEMSampler("dw4", config=dict(batch_size=8, num_mc_samples=8, sde_steps=4, sample_batch_size=8,
                                   network_options=dict(hidden_irreps="4x0e + 1x1o", n_layers=1)),
                device="cpu").save(run / "checkpoint.pt")
    return run


def _bad_cli_cases(run: Path, files: dict) -> list[tuple[str, list[str], str]]:
    npz = str(files[".npz"])
    return [
        ("train", ["train", "--system", "argon", "--out", str(run / "x")], "unknown system 'argon'"),
        ("train", ["train", "--system", "dw4", "--out", str(run / "x"), "--config", str(run / "none.toml")],
         "not found"),
        ("train", ["train", "--system", "dw4", "--out", str(run / "x"), "--config", npz], "not valid TOML"),
        ("train", ["train", "--system", "dw4", "--out", str(run / "x"), "--outer-iterations", "-2"],
         "outer_iterations"),
        ("train", ["train", "--system", "lj13", "--out", str(run)], "another system"),
        ("sample", ["sample", str(run / "missing"), "-n", "5", "--out", str(run / "s.npz")], "not found"),
        ("sample", ["sample", str(files[".npz"].parent), "-n", "5", "--out", str(run / "s.npz")], "no checkpoint"),
        ("sample", ["sample", str(run), "-n", "0", "--out", str(run / "s.npz")], "n must be a positive int"),
        ("evaluate", ["evaluate", str(run / "missing.npz"), "--system", "dw4"], "no such sample file"),
        ("evaluate", ["evaluate", str(run / "checkpoint.pt"), "--system", "dw4"], "suffix"),
        ("evaluate", ["evaluate", npz, "--system", "lj13"], "particles per configuration"),
        ("evaluate", ["evaluate", npz, "--system", "argon"], "unknown system"),
        ("evaluate", ["evaluate", npz, "--system", "dw4", "--batches", "0"], "n_batches"),
        ("evaluate", ["evaluate", npz, "--system", "dw4", "--reference", str(run / "missing.xyz")], "no such"),
        ("md", ["md", "--system", "gmm40", "-n", "3", "--out", str(run / "m.npz"), "--timestep", "-1"], "timestep"),
        ("md", ["md", "--system", "dw4", "-n", "0", "--out", str(run / "m.npz")], "n_samples"),
        ("md", ["md", "--system", "dw4", "-n", "3", "--out", str(run / "m.npz"), "--timestep", "nan"], "timestep"),
        ("md", ["md", "--system", "dw4", "-n", "3", "--out", npz], "exists"),
    ]


def test_cli_user_errors_exit_2_with_one_line(run_dir, sample_files, capsys):
    _, files, _ = sample_files
    for command, args, message in _bad_cli_cases(run_dir, files):
        assert main(args) == 2, args
        line = _one_line_error(capsys, command)
        assert message in line, (args, line)


@pytest.mark.parametrize("args", [
    [], ["fly"], ["train"], ["train", "--system", "dw4"], ["train", "--system", "dw4", "--out", "r", "--device", "gpu"],
    ["train", "--system", "dw4", "--out", "r", "--outer-iterations", "abc"], ["sample", "r", "-n", "x", "--out", "a"],
    ["md", "--system", "dw4", "-n", "3"], ["evaluate"],
], ids=lambda a: " ".join(a) or "nothing")
def test_cli_argparse_errors_exit_2_without_traceback(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" in err.splitlines()[-1]


@pytest.mark.parametrize("out", ["m.txt", "nodir/m.npz"])
def test_cli_bad_output_path_is_refused_before_any_work(out, run_dir, tmp_path, monkeypatch, capsys):
    import idem_md.md

    def no_work(*a, **k):
        raise AssertionError("MD ran although --out is unusable")

    monkeypatch.setattr(idem_md.md, "run_md", no_work)
    monkeypatch.setattr(IDEMSampler, "sample", no_work)
    assert main(["md", "--system", "dw4", "-n", "3", "--out", str(tmp_path / out), "--quiet"]) == 2
    _one_line_error(capsys, "md")
    assert main(["sample", str(run_dir), "-n", "3", "--out", str(tmp_path / out), "--quiet"]) == 2
    _one_line_error(capsys, "sample")
