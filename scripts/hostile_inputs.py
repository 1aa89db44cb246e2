"""Hostile inputs, as a new user would try them, and how idem_md answers each (issue #17).

Every case is run and classified:

* ``clear error``: an exception of the user-error family (the ones ``idem-md`` prints as
  ``idem-md CMD: error: ...`` with exit code 2) whose message is one line and names what to change
  (a regular expression per case), or, at the command line, exit code 2 and such a line on stderr;
* ``partial``: a result that keeps the good part and says, in a warning, how much was lost or
  what is wrong (the warning must match the case's expression);
* ``unclear error``: a user error whose message is not one line or does not say what the case
  expects;
* ``traceback``: any other exception (what a user would see as a traceback);
* ``silent``: a result without error or warning where one was expected (silent garbage).

``tests/test_hostile.py`` runs the same list and requires each case to give its expected outcome.
Run it as a script for the tally that docs/reliability.md quotes::

    OMP_NUM_THREADS=1 python scripts/hostile_inputs.py
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
TINY_NET = dict(hidden_irreps="8x0e + 2x1o", n_layers=1, n_radial_basis=4, radial_hidden=8, time_embedding_dim=8)
TINY = dict(batch_size=8, num_mc_samples=16, inner_steps=2, samples_per_outer=8, sde_steps=8, buffer_size=32,
            outer_iterations=1, sample_batch_size=8, network_options=TINY_NET)
TINY_SET = [f"--set={k}={v}" for k, v in TINY.items() if k != "network_options"] + [
    f"--set=network_options.{k}={v!r}".replace("'", '"') for k, v in TINY_NET.items()]
OUTCOMES = ("clear error", "partial", "unclear error", "traceback", "silent")

__all__ = ["Case", "CASES", "classify", "run_all", "main"]


@dataclass(frozen=True)
class CliResult:
    """What a command-line call left: its exit code and stderr."""

    code: int
    stderr: str


@dataclass(frozen=True)
class Case:
    """One hostile input: ``run(workdir)`` does it; ``expect`` is ``"clear error"`` or ``"partial"``;
    ``says`` is a regular expression the error line (or the partial result's warning) must match."""

    kind: str
    name: str
    run: Callable[[Path], Any]
    expect: str
    says: str


def _user_errors() -> tuple[type[BaseException], ...]:
    from idem_md.checkpoint import CheckpointError
    from idem_md.cli import CLIError
    from idem_md.energies.base import EnergyEvaluationError
    from idem_md.runlock import RunLockedError

    return (CLIError, ValueError, TypeError, FileNotFoundError, FileExistsError, CheckpointError, RunLockedError,
            NotImplementedError, EnergyEvaluationError, FloatingPointError, IsADirectoryError, PermissionError,
            MemoryError)


def classify(case: Case, workdir: Path) -> tuple[str, str]:
    """Run ``case`` in ``workdir``; returns ``(outcome, message)``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = case.run(workdir)
        except _user_errors() as exc:
            msg = str(exc)
            ok = "\n" not in msg.strip() and re.search(case.says, msg, re.I)
            return ("clear error" if ok else "unclear error"), f"{type(exc).__name__}: {msg}"
        except Exception as exc:  # noqa: BLE001 - anything else is what a user sees as a traceback
            return "traceback", f"{type(exc).__name__}: {exc}"
    if isinstance(result, CliResult):
        lines = [ln for ln in result.stderr.splitlines() if ln.strip() and "%|" not in ln]
        last = lines[-1] if lines else ""
        ok = (result.code == 2 and "Traceback" not in result.stderr and ": error: " in last
              and re.search(case.says, last, re.I))
        if ok:
            return "clear error", last
        if "Traceback" in result.stderr or result.code not in (0, 2):
            return "traceback", f"exit {result.code}: {last}"
        return ("unclear error" if result.code == 2 else "silent"), f"exit {result.code}: {last}"
    said = [str(w.message) for w in caught]
    if any(re.search(case.says, m, re.I) for m in said):
        return "partial", next(m for m in said if re.search(case.says, m, re.I))
    return "silent", f"returned {type(result).__name__} without a matching warning ({said[:1]})"


# ------------------------------------------------------------------ helpers
def cli(*argv: str) -> CliResult:
    """``idem-md ARGV`` in this process (argparse's exit is kept as the exit code)."""
    from idem_md.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - an uncaught exception is a traceback at the real edge
            import traceback

            traceback.print_exc(file=err)
            code = 1
    return CliResult(code, err.getvalue())


def subprocess_cli(*argv: str) -> CliResult:
    """A real process (the edge is the point): ``python ARGV`` from the repository root."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    return CliResult(proc.returncode, proc.stderr)


def sampler(system: str = "dw4", **overrides):
    from idem_md import IDEMSampler

    return IDEMSampler(system, config={**TINY, **overrides}, device="cpu")


_RUNS: dict[Path, Path] = {}


def trained_run(workdir: Path) -> Path:
    """A tiny trained DW-4 run directory (made once per work directory)."""
    run = workdir / "run"
    if workdir not in _RUNS:
        s = sampler()
        s.fit(progress=False)
        run.mkdir(exist_ok=True)
        s.save(run / "checkpoint.pt")
        _RUNS[workdir] = run
    return run


def _fresh(workdir: Path, name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workdir))
    return path


def _ase_target(calc_results: Callable[[int], tuple[float, np.ndarray]]):
    from ase import Atoms
    from ase.calculators.calculator import Calculator, all_changes

    from idem_md.energies.ase_bridge import ASEEnergy

    class Calc(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            e, f = calc_results(len(self.atoms))
            self.results = {"energy": e, "forces": f}

    return ASEEnergy(Atoms("Ar3", positions=np.eye(3) * 3.0), Calc(), 300)


def nan_target():
    return _ase_target(lambda n: (float("nan"), np.full((n, 3), np.nan)))


def constant_target():
    return _ase_target(lambda n: (1.0, np.zeros((n, 3))))


def _turns_nan_after_first_batch():
    from idem_md.energies.double_well import MultiDoubleWell

    class LaterNaN(MultiDoubleWell):
        """Finite on the first call (the target check), NaN everywhere after."""

        def __init__(self):
            super().__init__(4, 2, name="dw4-later-nan", backend="torch")
            self.calls = 0

        def _energy_and_forces(self, x):
            self.calls += 1
            e, f = super()._energy_and_forces(x)
            return (e, f) if self.calls == 1 else (e * float("nan"), f * float("nan"))

    return LaterNaN()


def _raising_target():
    def fail(n):
        raise RuntimeError("SCF did not converge")

    return _ase_target(fail)


def _nan_rows_network(s, fraction: float):
    """Make the score NaN for the first ``fraction`` of each sampling batch's rows (diverged trajectories)."""
    net = s.network

    class Poisoned(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x, t):
            out = self.net(x, t)
            k = int(round(fraction * len(x)))
            if k:
                out = out.clone()
                out[:k] = float("nan")
            return out

    s.network = Poisoned()
    return s


def _fit(target, **overrides):
    from idem_md import IDEMSampler

    s = IDEMSampler(target, config={**TINY, "outer_iterations": 2, "inner_steps": 6, **overrides}, device="cpu")
    return s.fit(progress=False)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _checkpoint_copy(workdir: Path, name: str, mutate: Callable[[bytes], bytes]) -> Path:
    d = _fresh(workdir, name)
    data = (trained_run(workdir) / "checkpoint.pt").read_bytes()
    _write(d / "checkpoint.pt", mutate(data))
    return d


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch HOSTILE_PICKLE_RAN",))


def _pickle_checkpoint(workdir: Path) -> Path:
    d = _fresh(workdir, "pickle")
    torch.save({"format": "idem_md-checkpoint", "evil": _Payload()}, d / "checkpoint.pt")
    return d


def _sample_file(workdir: Path, name: str, n: int = 6):
    from idem_md.io import Samples

    x = torch.randn(n, 4, 2, dtype=torch.float64)
    path = _fresh(workdir, "samples") / name
    Samples(x, None, {"system": "dw4"}).save(path)
    return path


def _edited_xyz(workdir: Path) -> Any:
    from idem_md import evaluate
    from idem_md.energies import get_energy
    from idem_md.io import Samples

    dw4 = get_energy("dw4")
    x = torch.randn(50, 4, 2, dtype=torch.float64)
    e = dw4.energy(x)
    e[3] = 1e6  # an edited energy
    path = _fresh(workdir, "xyz") / "edited.xyz"
    Samples(x, e, {"system": "dw4"}).save(path)
    return evaluate(Samples.load(path, n_particles=4, spatial_dim=2), dw4, None, n_batches=1)


def _locked_run(workdir: Path) -> CliResult:
    import json
    import socket

    d = _fresh(workdir, "locked")
    (d / "run.lock").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    return cli("train", "--system", "dw4", "--out", str(d), "--quiet", *TINY_SET)


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _sample(s, n, **kw):
    kw.setdefault("progress", False)
    return s.sample(n, **kw)


def _cases() -> list[Case]:
    run = trained_run
    c: list[Case] = []
    add = lambda kind, name, fn, expect, says: c.append(Case(kind, name, fn, expect, says))  # noqa: E731

    # Bad CLI arguments (in-process idem-md)
    add("cli argument", "train unknown system", lambda w: cli("train", "--system", "nosuch", "--out", str(w / "a")),
        "clear error", "nosuch")
    for value, says in [("batch_size=-3", "batch_size"), ("nonsense=1", "nonsense"), ("lr=abc", "lr"),
                        ("batch_size=1.5", "batch_size"), ("seed=18446744073709551616", "seed"),
                        ("sigma_min=5", "sigma_min"), ("network=transformer", "network"),
                        ("network_options.n_layers=-1", "n_layers"), ("=3", "key=value")]:
        add("cli argument", f"train --set {value}",
            lambda w, v=value: cli("train", "--system", "dw4", "--out", str(_fresh(w, "t") / "r"), "--set", v),
            "clear error", says)
    add("cli argument", "train --config missing", lambda w: cli("train", "--system", "dw4", "--out", str(w / "b"),
        "--config", str(w / "missing.toml")), "clear error", "missing.toml")
    add("cli argument", "train --config bad TOML", lambda w: cli("train", "--system", "dw4", "--out", str(w / "b"),
        "--config", str(_write(w / "bad.toml", b"batch_size = = 3"))), "clear error", "TOML")
    add("cli argument", "train --energy-budget 0.5", lambda w: cli("train", "--system", "dw4", "--out",
        str(w / "b"), "--energy-budget", "0.5"), "clear error", "energy-budget")
    add("cli argument", "train --outer-iterations abc (argparse)", lambda w: cli("train", "--system", "dw4",
        "--out", str(w / "b"), "--outer-iterations", "abc"), "clear error", "outer-iterations")
    add("cli argument", "sample without -n (argparse)", lambda w: cli("sample", str(run(w)), "--out", "x.npz"),
        "clear error", "-n")
    add("cli argument", "sample missing run", lambda w: cli("sample", str(w / "nowhere"), "-n", "4", "--out",
        str(w / "x.npz")), "clear error", "run directory not found")
    add("cli argument", "sample -n 0", lambda w: cli("sample", str(run(w)), "-n", "0", "--out",
        str(_fresh(w, "s") / "x.npz"), "--quiet"), "clear error", "n must be")
    add("cli argument", "sample --steps 0", lambda w: cli("sample", str(run(w)), "-n", "4", "--steps", "0",
        "--out", str(_fresh(w, "s") / "x.npz"), "--quiet"), "clear error", "steps")
    add("cli argument", "sample --out x.foo", lambda w: cli("sample", str(run(w)), "-n", "4", "--out",
        str(w / "x.foo")), "clear error", r"\.foo|suffix")
    out = lambda w: str(_fresh(w, "o") / "x.npz")  # noqa: E731 - a fresh output path
    for extra, says in [(("--steps", "-1"), "steps"), (("--correct", "mala", "--mala-steps", "-5"), "mala_steps"),
                        (("--correct", "smc", "--oversample", "0"), "oversample"),
                        (("--correct", "smc", "--anneal", "--cess-target", "2"), "cess_target"),
                        (("--correct", "relax", "--relax-steps", "-1"), "relax_steps")]:
        add("cli argument", f"sample {' '.join(extra)}", lambda w, e=extra: cli("sample", str(run(w)), "-n", "5",
            *e, "--out", out(w), "--quiet"), "clear error", says)
    add("cli argument", "sample --out a directory", lambda w: cli("sample", str(run(w)), "-n", "5", "--out",
        str(w), "--quiet"), "clear error", "suffix")
    add("cli argument", "train --set network_options.bogus=3", lambda w: cli("train", "--system", "dw4", "--out",
        str(_fresh(w, "t") / "r"), "--set", "network_options.bogus=3"), "clear error", "bogus")
    add("cli argument", "train --out an existing file", lambda w: cli("train", "--system", "dw4", "--out",
        str(_sample_file(w, "s.npz")), "--quiet", *TINY_SET), "clear error", "is a file")
    add("cli argument", "train --out in an unwritable place", lambda w: cli("train", "--system", "dw4", "--out",
        "/proc/idem_md_run", "--quiet", *TINY_SET), "clear error", "cannot create the run directory")
    for extra, says in [(("--batches", "0"), "n_batches"), (("--batch-size", "0"), "batch_size")]:
        add("cli argument", f"evaluate {' '.join(extra)}", lambda w, e=extra: cli("evaluate",
            str(_sample_file(w, "e.npz")), "--system", "dw4", *e), "clear error", says)
    for extra, says in [(("-n", "0"), "n_samples"), (("--timestep", "-1"), "timestep"),
                        (("--timestep", "nan"), "timestep")]:
        add("cli argument", f"md {' '.join(extra)}", lambda w, e=extra: cli("md", "--system", "dw4", "-n", "5", *e,
            "--out", out(w), "--quiet"), "clear error", says)
    add("cli argument", "evaluate missing file", lambda w: cli("evaluate", str(w / "none.xyz"), "--system", "dw4"),
        "clear error", "none.xyz")
    add("cli argument", "evaluate file of another system", lambda w: cli("evaluate",
        str(_sample_file(w, "dw4.npz")), "--system", "lj13"), "clear error", "13|particles")

    # Bad config values (Python API)
    from idem_md import IDEMConfig, IDEMSampler

    for field, value in [("batch_size", 0), ("num_mc_samples", -1), ("lr", float("nan")), ("sigma_max", float("inf")),
                         ("score_clip", -1.0), ("inner_steps", 2.5), ("pdem", "yes"), ("seed", 2**64),
                         ("checkpoint_every_s", 0.0), ("loss_weighting", "l1")]:
        add("config value", f"IDEMConfig({field}={value!r})", lambda w, f=field, v=value: IDEMConfig(**{f: v}),
            "clear error", field)
    add("config value", "IDEMConfig(sigma_min >= sigma_max)", lambda w: IDEMConfig(sigma_min=3.0, sigma_max=2.0),
        "clear error", "sigma_min")
    add("config value", "IDEMSampler(42)", lambda w: IDEMSampler(42), "clear error", "energy must be")
    add("config value", "IDEMSampler(device='banana')", lambda w: IDEMSampler("dw4", TINY, device="banana"),
        "clear error", "device")
    add("config value", "sample(max_failed_fraction=2)", lambda w: _sample(sampler(), 4, max_failed_fraction=2),
        "clear error", "max_failed_fraction")
    add("config value", "sample(1.5)", lambda w: _sample(sampler(), 1.5), "clear error", "n must be")
    add("config value", "fit(outer_iterations=-1)", lambda w: sampler().fit(-1, progress=False), "clear error",
        "outer_iterations")

    # Bad targets
    add("bad target", "ASE calculator returning NaN (issue case 3)", lambda w: _fit(nan_target()), "clear error",
        "ase-calc.*non-finite")
    add("bad target", "ASE calculator returning a constant", lambda w: _fit(constant_target()), "clear error",
        "same energy")
    add("bad target", "target NaN after its first batch", lambda w: _fit(_turns_nan_after_first_batch()),
        "clear error", "ESS was 0 for 10 consecutive")
    add("bad target", "ASE calculator raising", lambda w: _fit(_raising_target()), "clear error",
        "SCF did not converge")
    add("bad target", "coordinate_scale=nan", lambda w: _fit("dw4", coordinate_scale=float("nan")),
        "clear error", "coordinate_scale")

    # Numerics of sampling
    add("sampling", "sample(8, steps=1) (issue case 2)", lambda w: _sample(sampler(), 8, steps=1), "partial",
        "far too few")
    add("sampling", "a quarter of trajectories diverge (issue case 1)",
        lambda w: _sample(_nan_rows_network(sampler(), 0.25), 8), "partial", r"2 of 8 .*diverged.*6 samples kept")
    add("sampling", "every trajectory diverges", lambda w: _sample(_nan_rows_network(sampler(), 1.0), 8),
        "clear error", "8 of 8 .*diverged")

    # Memory (issue case 7)
    add("memory", "fit with batch_size=10**7", lambda w: sampler(batch_size=10**7).fit(progress=False),
        "clear error", "reduce batch_size")
    add("memory", "buffer_size=10**11", lambda w: sampler(buffer_size=10**11), "clear error", "reduce buffer_size")
    add("memory", "sample(10**11)", lambda w: _sample(sampler(), 10**11), "clear error", r"reduce n\b")
    add("memory", "train --set batch_size=10000000", lambda w: cli("train", "--system", "dw4", "--out",
        str(_fresh(w, "oom") / "r"), "--set", "batch_size=10000000", "--quiet"), "clear error", "reduce batch_size")
    add("memory", "allocator error at the CLI edge", lambda w: _allocator_error(), "clear error", "out of memory")

    # Files
    add("file", "random-bytes checkpoint", lambda w: cli("sample", str(_checkpoint_copy(w, "rnd",
        lambda b: os.urandom(len(b)))), "-n", "4", "--out", str(_fresh(w, "s") / "x.npz")), "clear error",
        "checkpoint")
    add("file", "truncated checkpoint", lambda w: cli("sample", str(_checkpoint_copy(w, "trunc", _truncate)), "-n",
        "4", "--out", str(_fresh(w, "s") / "x.npz")), "clear error", "checkpoint")
    add("file", "empty checkpoint", lambda w: cli("sample", str(_checkpoint_copy(w, "empty", lambda b: b"")), "-n",
        "4", "--out", str(_fresh(w, "s") / "x.npz")), "clear error", "checkpoint")
    add("file", "checkpoint with pickled code", lambda w: _pickle_case(w), "clear error", "not a readable")
    add("file", "plain pickle as checkpoint", lambda w: cli("sample", str(_checkpoint_copy(w, "pkl",
        lambda b: pickle.dumps({"a": 1}))), "-n", "4", "--out", str(_fresh(w, "s") / "x.npz")), "clear error",
        "checkpoint")
    add("file", "checkpoint of another system", lambda w: IDEMSampler.load(run(w) / "checkpoint.pt", energy="lj13"),
        "clear error", "another system")
    add("file", "sample --out into a missing directory", lambda w: cli("sample", str(run(w)), "-n", "4", "--out",
        str(w / "no" / "dir" / "x.npz")), "clear error", "does not exist")
    add("file", "sample --out into an unwritable directory", lambda w: cli("sample", str(run(w)), "-n", "4",
        "--out", "/proc/idem_md_x.npz"), "clear error", "not writable")
    add("file", "sample --out existing file", lambda w: cli("sample", str(run(w)), "-n", "4", "--out",
        str(_sample_file(w, "x.npz"))), "clear error", "overwrite")
    add("file", "md --out into an unwritable directory", lambda w: cli("md", "--system", "dw4", "-n", "4", "--out",
        "/proc/idem_md_md.npz", "--quiet"), "clear error", "not writable")
    add("file", "truncated .xyz", lambda w: _load_truncated(w, "x.xyz"), "clear error", "x.xyz")
    add("file", "truncated .npz", lambda w: _load_truncated(w, "x.npz"), "clear error", "x.npz")
    add("file", "evaluate an .xyz with an edited energy (issue case 6)", _edited_xyz, "partial",
        "1 of 50 stored energies disagree")
    add("file", "second train on a live run (issue case 4)", _locked_run, "clear error", "in use by process")
    add("file", "example with a non-empty --out (issue case 7)", lambda w: subprocess_cli(
        "examples/lj13_vs_openmm.py", "--fast", "--out", str(_non_empty(w))), "clear error", "not empty")
    add("file", "idem-md process, batch_size=10**7 (issue case 7)", lambda w: subprocess_cli(
        "-m", "idem_md", "train", "--system", "dw4", "--out", str(_fresh(w, "oomp") / "r"), "--quiet",
        "--set", "batch_size=10000000"), "clear error", "reduce batch_size")
    return c


def _allocator_error() -> CliResult:
    from idem_md.cli import run_guarded

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = run_guarded("idem-md train", lambda: torch.empty(2**62, dtype=torch.uint8))
    return CliResult(code, err.getvalue())


def _pickle_case(workdir: Path) -> Any:
    from idem_md import IDEMSampler

    d = _pickle_checkpoint(workdir)
    try:
        return IDEMSampler.load(d / "checkpoint.pt")
    finally:
        if (REPO / "HOSTILE_PICKLE_RAN").exists() or Path("HOSTILE_PICKLE_RAN").exists():
            raise AssertionError("the pickled code in the checkpoint ran")


def _load_truncated(workdir: Path, name: str):
    from idem_md.io import Samples

    path = _sample_file(workdir, name, n=20)
    path.write_bytes(_truncate(path.read_bytes()))
    return Samples.load(path, n_particles=4, spatial_dim=2)


def _non_empty(workdir: Path) -> Path:
    d = _fresh(workdir, "full")
    (d / "keep.txt").write_text("a user's file\n")
    return d


CASES: list[Case] = []  # filled on first use (building them imports idem_md)


def cases() -> list[Case]:
    if not CASES:
        CASES.extend(_cases())
    return CASES


def run_all(workdir: Path, verbose: bool = True) -> dict[str, dict[str, int]]:
    """Classify every case; returns ``{kind: {outcome: count}}`` and prints one line per case."""
    tally: dict[str, dict[str, int]] = {}
    for case in cases():
        outcome, message = classify(case, workdir)
        tally.setdefault(case.kind, dict.fromkeys(OUTCOMES, 0))[outcome] += 1
        if verbose:
            mark = "ok " if outcome == case.expect else "BAD"
            print(f"{mark} [{case.kind}] {case.name}: {outcome}: {message[:160]}", flush=True)
    return tally


def main() -> int:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as d:
        tally = run_all(Path(d))
    print("\n| kind | inputs | clear error | partial result with a count | unclear error | traceback | silent |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    total = dict.fromkeys(OUTCOMES, 0)
    for kind, counts in tally.items():
        print(f"| {kind} | {sum(counts.values())} | " + " | ".join(str(counts[o]) for o in OUTCOMES) + " |")
        for o in OUTCOMES:
            total[o] += counts[o]
    print(f"| all | {sum(total.values())} | " + " | ".join(str(total[o]) for o in OUTCOMES) + " |")
    return 0 if total["clear error"] + total["partial"] == sum(total.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
