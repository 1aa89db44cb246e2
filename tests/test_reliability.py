"""Failure modes of training and checkpoints: hard kill, SIGINT/SIGTERM, non-finite energies,
NaN loss, failing engines, unsafe or mismatched checkpoints, determinism.

Each test here is cited in ``docs/reliability.md``. Runs that must be killed or signalled
are real ``python -m idem_md train`` subprocesses; everything else runs in-process on the
tiny DW-4 configuration below (seconds on 2 CPU cores).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from idem_md import IDEMConfig, IDEMSampler, get_energy
from idem_md.checkpoint import CHECKPOINT_VERSION, CheckpointError, load_checkpoint
from idem_md.cli import main
from idem_md.energies import MultiDoubleWell
from idem_md.energies.base import EnergyEvaluationError

TINY_NET = dict(hidden_irreps="8x0e + 2x1o", n_layers=1, n_radial_basis=4, radial_hidden=8, time_embedding_dim=8)
TINY = dict(batch_size=8, num_mc_samples=16, inner_steps=2, samples_per_outer=8, sde_steps=8, buffer_size=32,
            outer_iterations=2, sample_batch_size=8, network_options=TINY_NET)
TEMP_CHECKPOINT = re.compile(r"^\.checkpoint\.pt\..+\.tmp$")  # atomic_save's temporary names
WAIT_S = 240.0  # generous: the 2 cores are shared with other jobs


def tiny(**overrides) -> IDEMSampler:
    return IDEMSampler("dw4", config={**TINY, **overrides}, device="cpu")


def tiny_sets(**overrides) -> list[str]:
    """The TINY config as ``--set`` arguments of ``idem-md train``."""
    cfg = {**TINY, **overrides}
    cfg.pop("outer_iterations")
    out: list[str] = []
    for key, value in cfg.items():
        if key == "network_options":
            for k, v in value.items():
                out += ["--set", f"network_options.{k}={v}"]
        else:
            out += ["--set", f"{key}={value}"]
    return out


def train_args(run: Path, outer: int, **overrides) -> list[str]:
    return ["train", "--system", "dw4", "--out", str(run), *tiny_sets(**overrides),
            "--outer-iterations", str(outer), "--device", "cpu", "--quiet"]


def start_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "idem_md", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(path: Path, proc: subprocess.Popen, min_outer: int) -> dict:
    """Poll ``path`` until it holds outer_iteration >= min_outer. A read that races with
    the writer's rename is retried (os.replace is atomic, so this is rare)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"training exited early with {proc.returncode}:\n{err[-3000:]}")
        if path.is_file():
            try:
                payload = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # replaced while being read
                payload = None
            if payload is not None and payload["outer_iteration"] >= min_outer:
                return payload
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no checkpoint with outer_iteration >= {min_outer} after {WAIT_S} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


def metrics_iterations(run: Path) -> list[int]:
    return [json.loads(line)["outer_iteration"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_state_matches_file(sampler: IDEMSampler, payload: dict) -> None:
    """The in-memory state right after IDEMSampler.load equals the checkpoint file."""
    assert sampler.outer_iteration == payload["outer_iteration"]
    assert sampler.inner_step == payload["inner_step"]
    assert sampler.counters == payload["counters"] and sampler.nonfinite == payload["nonfinite"]
    assert [r.to_dict() for r in sampler.history] == payload["history"]
    assert torch.equal(sampler.buffer.contents(), payload["buffer"]["data"])
    assert torch.equal(sampler.generator.get_state(), payload["generator"])
    for name, value in sampler.network.state_dict().items():
        assert torch.equal(value, payload["network"][name]), name
    mine, theirs = sampler.optimizer.state_dict(), payload["optimizer"]
    assert mine["param_groups"] == theirs["param_groups"]
    assert mine["state"].keys() == theirs["state"].keys() and mine["state"]
    for idx, st in mine["state"].items():
        for key, value in st.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(theirs["state"][idx][key])), (idx, key)


# ---------------------------------------------------------------- hard kill
def test_hard_kill_leaves_loadable_checkpoint_and_resume_continues_exactly(tmp_path):
    run = tmp_path / "run"
    ckpt = run / "checkpoint.pt"
    inner_steps = 2  # 40 outer iterations: far from done when killed
    proc = start_cli(train_args(run, 40, inner_steps=inner_steps, checkpoint_every=1), tmp_path)
    try:
        wait_for_checkpoint(ckpt, proc, min_outer=2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == -signal.SIGKILL

    # Only the run's files remain, plus possibly a temporary checkpoint if the kill hit a write:
    # atomic_save writes to ".checkpoint.pt.<random>.tmp" and renames, so the final name is
    # never partial. A leftover temporary file is never read.
    names = {p.name for p in run.iterdir()}
    leftovers = {n for n in names if TEMP_CHECKPOINT.match(n)}
    # run.lock: the dead holder's; system.json: the target's description (idem_md.targets)
    assert names - leftovers <= {"checkpoint.pt", "config.json", "system.json", "metrics.jsonl", "run.lock"}
    assert "checkpoint.pt" in names and "checkpoint.pt" not in leftovers
    payload = load_checkpoint(ckpt)
    k = payload["outer_iteration"]
    assert k >= 2 and payload["inner_step"] == 0

    sampler = IDEMSampler.load(ckpt, device="cpu")
    assert_state_matches_file(sampler, payload)
    before = dict(sampler.counters)
    buffer_before = sampler.buffer.contents()
    sampler.fit(k + 1, progress=False, checkpoint_path=ckpt)

    cfg = sampler.config
    assert sampler.outer_iteration == k + 1 and len(sampler.history) == k + 1
    assert sampler.history[-1].outer_iteration == k + 1
    assert sampler.counters["estimator"] - before["estimator"] == inner_steps * cfg.batch_size * cfg.num_mc_samples
    assert sampler.counters["sampling"] - before["sampling"] == cfg.samples_per_outer
    assert sampler.counters["evaluation"] == before["evaluation"]
    # FIFO: the old contents followed by this iteration's samples_per_outer new ones
    new = sampler.buffer.contents()
    assert torch.equal(new[:-cfg.samples_per_outer], buffer_before[-(len(new) - cfg.samples_per_outer):])
    assert load_checkpoint(ckpt)["outer_iteration"] == k + 1


_KILL_AT_RENAME = """
import os, signal, sys
from idem_md.cli import main
real_replace, calls = os.replace, [0]
def replace(src, dst):
    if os.path.basename(dst) == "checkpoint.pt":
        calls[0] += 1
        if calls[0] == int(sys.argv[1]):  # temporary file complete, final name not yet replaced
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)
os.replace = replace
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def killed_at_write(tmp_path_factory) -> Path:
    """A run trained with checkpoint_every=1 by a child that SIGKILLed itself just before the
    third checkpoint rename (its temporary file fully written)."""
    root = tmp_path_factory.mktemp("killed")
    run = root / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", _KILL_AT_RENAME, "3", *train_args(run, 5, checkpoint_every=1)],
                         cwd=root, env=env, capture_output=True, text=True, timeout=WAIT_S)
    assert res.returncode == -signal.SIGKILL, res.stderr[-3000:]
    return run


def _copy_run(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def test_kill_during_checkpoint_write_keeps_previous_checkpoint(killed_at_write, tmp_path):
    run = _copy_run(killed_at_write, tmp_path)
    assert load_checkpoint(run / "checkpoint.pt")["outer_iteration"] == 2  # the previous one, intact
    temps = [p for p in run.iterdir() if TEMP_CHECKPOINT.match(p.name)]
    assert len(temps) == 1  # the unfinished write, under a name no reader uses
    assert torch.load(temps[0], weights_only=True)["outer_iteration"] == 3

    rc = main(train_args(run, 4, checkpoint_every=1))  # the same command resumes
    payload = load_checkpoint(run / "checkpoint.pt")
    assert payload["outer_iteration"] == 4
    assert payload["counters"]["estimator"] == 4 * 2 * 8 * 16  # the lost iteration 3 was redone, not double-counted
    assert rc == 0


def test_failed_checkpoint_write_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    import errno

    from idem_md import checkpoint

    path = tmp_path / "checkpoint.pt"
    s = tiny()
    s.save(path)
    before = path.read_bytes()
    real_save = torch.save

    def disk_full(obj, fh, *a, **k):
        real_save(obj, fh, *a, **k)
        fh.truncate(100)  # half-written...
        raise OSError(errno.ENOSPC, "No space left on device")  # ...then the disk fills up

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    s.outer_iteration = 5
    with pytest.raises(OSError, match="No space left"):
        s.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    assert path.read_bytes() == before


def test_metrics_log_has_no_duplicates_after_hard_kill_and_resume(killed_at_write, tmp_path):
    run = _copy_run(killed_at_write, tmp_path)
    assert metrics_iterations(run) == [1, 2, 3]  # iteration 3 was logged, its checkpoint never landed
    assert main(train_args(run, 4, checkpoint_every=1)) == 0
    assert metrics_iterations(run) == [1, 2, 3, 4]


# ---------------------------------------------------------------- SIGINT / SIGTERM
@pytest.mark.parametrize("sig,exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM)],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_saves_mid_iteration_and_same_command_resumes(sig, exit_code, tmp_path):
    run = tmp_path / "run"
    ckpt = run / "checkpoint.pt"
    inner_steps = 400  # iteration 2 lasts seconds even on an idle machine, so the signal lands inside it
    args = train_args(run, 2, inner_steps=inner_steps, checkpoint_every=1)
    proc = start_cli(args, tmp_path)
    try:
        first = wait_for_checkpoint(ckpt, proc, min_outer=1)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=WAIT_S)
    finally:
        stop(proc)
    assert proc.returncode == exit_code, err[-3000:]
    assert "Traceback" not in err
    said = "interrupted" if sig == signal.SIGINT else "terminated (SIGTERM)"
    assert f"{said}: checkpoint saved at {ckpt}" in err and "run the same command to resume" in err
    # Saved at the signal, at the next inner-step boundary of the unfinished iteration.
    payload = load_checkpoint(ckpt)
    assert payload["outer_iteration"] == first["outer_iteration"] == 1
    assert 1 <= payload["inner_step"] <= inner_steps
    assert payload["counters"]["estimator"] == (inner_steps + payload["inner_step"]) * 8 * 16

    rc = main(args)  # the same command resumes and finishes
    done = load_checkpoint(ckpt)
    assert (done["outer_iteration"], done["inner_step"]) == (2, 0)
    assert done["counters"]["estimator"] == 2 * inner_steps * 8 * 16  # no inner step lost or repeated
    assert metrics_iterations(run) == [1, 2]
    assert rc == 0


def test_interrupt_mid_iteration_resumes_bit_identically(tmp_path):
    ckpt = tmp_path / "c.pt"
    reference = tiny()
    reference.fit(progress=False)

    s = tiny()
    real_step, calls = s._train_step, [0]

    def step():
        calls[0] += 1
        out = real_step()
        if calls[0] == 3:  # outer iteration 2, inner step 1 of 2
            signal.raise_signal(signal.SIGINT)
        return out

    s._train_step = step
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        s.fit(progress=False, checkpoint_path=ckpt)
    assert signal.getsignal(signal.SIGINT) is previous  # handler restored
    payload = load_checkpoint(ckpt)
    assert (payload["outer_iteration"], payload["inner_step"]) == (1, 1)

    resumed = IDEMSampler.load(ckpt, device="cpu")
    resumed.fit(progress=False)
    for p, q in zip(reference.network.parameters(), resumed.network.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(reference.buffer.contents(), resumed.buffer.contents())
    assert reference.counters == resumed.counters
    def strip(history):
        return [{k: v for k, v in r.to_dict().items() if k != "wall_time_s"} for r in history]

    assert strip(reference.history) == strip(resumed.history)


# ---------------------------------------------------------------- non-finite energies
class NonFiniteDW4(MultiDoubleWell):
    """DW-4 that returns ``bad`` (NaN or +-inf) energy and forces wherever x[:, 0, 0] > 0, and
    counts how many such configurations it was asked about, per entry point."""

    def __init__(self, bad: float):
        super().__init__(4, 2, name="dw4", backend="torch")
        self.bad = bad
        self.bad_in_estimator = 0  # via energy_and_forces
        self.bad_in_energy = 0  # via energy (buffer candidates)

    def _mask(self, x):
        return x[:, 0, 0] > 0

    def _energy(self, x):
        e = super()._energy(x)
        m = self._mask(x)
        self.bad_in_energy += int(m.sum())
        return torch.where(m, torch.full_like(e, self.bad), e)

    def _energy_and_forces(self, x):
        e, f = super()._energy_and_forces(x)
        m = self._mask(x)
        self.bad_in_estimator += int(m.sum())
        return torch.where(m, torch.full_like(e, self.bad), e), torch.where(m[:, None, None], self.bad, f)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "+inf", "-inf"])
def test_nonfinite_energies_get_zero_weight_and_are_rejected_from_buffer(bad):
    energy = NonFiniteDW4(bad)
    s = IDEMSampler(energy, config={**TINY, "outer_iterations": 1}, device="cpu")
    s.preflight()  # the target check's first batch is not the estimator's: count from here
    assert s.counters["target_check"] == 8
    energy.bad_in_estimator = 0
    history = s.fit(progress=False)

    assert s.outer_iteration == 1 and all(torch.isfinite(torch.tensor(r.loss)) for r in history)
    assert energy.bad_in_estimator > 0 and energy.bad_in_energy > 0
    assert s.nonfinite["estimator_perturbations"] == energy.bad_in_estimator
    assert s.nonfinite["rejected_buffer_candidates"] == energy.bad_in_energy
    assert history[-1].nonfinite_perturbations == energy.bad_in_estimator
    assert history[-1].rejected_buffer_candidates == energy.bad_in_energy
    # The initial prior draw is not energy-checked; every later entry had a finite energy.
    contents = s.buffer.contents()
    assert len(contents) == 8 + 8 - energy.bad_in_energy
    assert (contents[8:, 0, 0] <= 0).all()
    for p in s.network.parameters():
        assert torch.isfinite(p).all()


# ---------------------------------------------------------------- NaN loss
def test_nan_loss_stops_run_and_keeps_last_good_checkpoint(tmp_path):
    ckpt = tmp_path / "c.pt"
    s = tiny(outer_iterations=4, checkpoint_every=1)
    net, calls = s._train_module, [0]

    def poisoned(x, t):
        calls[0] += 1
        out = net(x, t)
        return out * float("nan") if calls[0] == 4 else out  # outer iteration 2, inner step 1

    s._train_module = poisoned
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(FloatingPointError, match=r"loss became nan at outer iteration 1, inner step 1") as info:
        s.fit(progress=False, checkpoint_path=ckpt)
    assert str(ckpt) in str(info.value)
    assert signal.getsignal(signal.SIGTERM) is previous
    payload = load_checkpoint(ckpt)
    assert (payload["outer_iteration"], payload["inner_step"]) == (1, 0)
    assert all(torch.isfinite(v).all() for v in payload["network"].values())
    IDEMSampler.load(ckpt, device="cpu")  # and it is usable


class _InfGradient(torch.autograd.Function):
    """Identity forward, infinite backward: a finite loss whose gradient overflows (as the
    derivative of a norm at a coincident pair would)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def test_nonfinite_gradient_never_reaches_a_checkpoint(tmp_path):
    ckpt = tmp_path / "c.pt"
    s = tiny(outer_iterations=4, checkpoint_every=1)
    net, calls = s._train_module, [0]

    def overflowing(x, t):
        calls[0] += 1
        out = net(x, t)
        return _InfGradient.apply(out) if calls[0] == 4 else out  # last inner step of iteration 2

    s._train_module = overflowing
    with pytest.raises(FloatingPointError):
        s.fit(progress=False, checkpoint_path=ckpt)
    payload = load_checkpoint(ckpt)
    assert all(torch.isfinite(v).all() for v in payload["network"].values())
    for st in payload["optimizer"]["state"].values():
        assert all(torch.isfinite(v).all() for v in st.values() if torch.is_tensor(v))


# ---------------------------------------------------------------- failing engine
def _flaky_ase_energy():
    pytest.importorskip("ase")
    from ase import Atoms
    from ase.calculators.calculator import Calculator, all_changes

    from idem_md.energies import ASEEnergy

    class FlakyCalculator(Calculator):
        """Harmonic trap (eV, Angstrom) that fails like a non-converging engine when x_0 > 0.5 A."""

        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            pos = self.atoms.get_positions()
            if pos[0, 0] > 0.5:
                raise RuntimeError("SCF did not converge")
            self.results = {"energy": 0.005 * float((pos**2).sum()), "forces": -0.01 * pos}

    return ASEEnergy(Atoms("Ar3"), FlakyCalculator(), temperature=300.0, name="flaky3")


def test_engine_exception_is_reported_with_index_and_propagates_out_of_fit(tmp_path):
    energy = _flaky_ase_energy()
    x = torch.zeros(4, 3, 3, dtype=torch.float64)
    x[2, 0, 0] = 1.0
    with pytest.raises(EnergyEvaluationError, match=r"configuration 2 .*SCF did not converge"):
        energy.energy_and_forces(x)

    s = IDEMSampler(energy, config=TINY, device="cpu")
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(EnergyEvaluationError, match=r"failed on configuration \d+ .*SCF did not converge") as info:
        s.fit(progress=False, checkpoint_path=tmp_path / "c.pt")
    assert isinstance(info.value.__cause__, RuntimeError)  # the engine's own error is kept
    assert signal.getsignal(signal.SIGINT) is previous
    assert not (tmp_path / "c.pt").exists()  # nothing half-trained was saved as if it were good


def test_engine_exception_in_cli_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from idem_md.energies import registry

    monkeypatch.setitem(registry._REGISTRY, "flaky3", lambda **kw: _flaky_ase_energy())
    args = ["train", "--system", "flaky3", "--out", str(tmp_path / "run"), *tiny_sets(), "--quiet", "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(r"^idem-md train: error: .*configuration \d+.*SCF did not converge", err, re.MULTILINE)


# ---------------------------------------------------------------- checkpoint loading
def test_pickled_code_in_checkpoint_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # unpickling this calls open(marker, "w"): creates the file
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    tiny().save(path)
    state = torch.load(path, weights_only=True)
    state["history"] = [Payload()]
    torch.save(state, path)

    with pytest.raises(CheckpointError, match="not a readable idem_md checkpoint"):
        IDEMSampler.load(path)
    assert not marker.exists()
    # The file really is malicious: an unsafe load would have run it.
    torch.load(path, weights_only=False)["history"][0].close()
    assert marker.exists()


def _damage(path: Path, how: str) -> str:
    """Damage a good checkpoint at ``path``; returns the message the refusal must contain."""
    state = torch.load(path, weights_only=True)
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return "not a readable idem_md checkpoint"
    if how == "empty":
        path.write_bytes(b"")
        return "not a readable idem_md checkpoint"
    if how == "random bytes":
        path.write_bytes(os.urandom(4096))
        return "not a readable idem_md checkpoint"
    if how == "not a checkpoint":
        torch.save({"weights": torch.zeros(3)}, path)
        return "missing format marker"
    if how == "newer format":
        state["format_version"] = CHECKPOINT_VERSION + 1
        torch.save(state, path)
        return f"format version {CHECKPOINT_VERSION + 1}.*upgrade idem_md"
    if how == "other network shape":
        state["config"]["network_options"] = {**TINY_NET, "hidden_irreps": "4x0e + 1x1o"}
        torch.save(state, path)
        return "network shape does not match"
    if how == "other network class":
        state["network_class"] = "MLPScoreNet"
        torch.save(state, path)
        return "holds a MLPScoreNet network"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncated", "empty", "random bytes", "not a checkpoint", "newer format",
                                 "other network shape", "other network class"])
def test_damaged_or_mismatched_checkpoint_is_refused_with_reason(how, tmp_path):
    path = tmp_path / "c.pt"
    tiny().save(path)
    expected = _damage(path, how)
    with pytest.raises(CheckpointError, match=expected):
        IDEMSampler.load(path)


@pytest.mark.parametrize("other,what", [("lj13", "n_particles"), (dict(kT=2.0), "kT"), (dict(d0=3.0), "d0")])
def test_checkpoint_of_another_system_is_refused_naming_the_difference(other, what, tmp_path):
    path = tmp_path / "c.pt"
    tiny().save(path)
    energy = get_energy(other) if isinstance(other, str) else get_energy("dw4", **other)
    with pytest.raises(CheckpointError, match=rf"another system \(.*{what}: checkpoint"):
        IDEMSampler.load(path, energy=energy)


@pytest.mark.parametrize("key", ["optimizer", "buffer", "counters", "energy"])
def test_checkpoint_missing_a_section_is_refused_naming_it(key, tmp_path):
    path = tmp_path / "c.pt"
    tiny().save(path)
    state = torch.load(path, weights_only=True)
    del state[key]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=key):
        IDEMSampler.load(path)


# ---------------------------------------------------------------- determinism
def test_same_seed_same_samples_other_seed_different():
    a, b, c = (tiny(seed=seed, outer_iterations=1) for seed in (7, 7, 8))
    for s in (a, b, c):
        s.fit(progress=False)
    xa, xb, xc = (s.sample(6, progress=False).positions for s in (a, b, c))
    assert torch.equal(xa, xb)
    assert not torch.allclose(xa, xc)


def test_loaded_checkpoint_samples_deterministically(tmp_path):
    path = tmp_path / "c.pt"
    s = tiny(outer_iterations=1)
    s.fit(progress=False, checkpoint_path=path)
    expected = s.sample(5, progress=False).positions
    for _ in range(2):
        assert torch.equal(IDEMSampler.load(path, device="cpu").sample(5, progress=False).positions, expected)


# ---------------------------------------------------------------- run lock
def test_a_second_train_on_a_live_run_exits_2_naming_the_holder_and_a_stale_lock_is_taken_over(tmp_path, capsys):
    import socket

    from idem_md.runlock import LOCK_NAME, RunLock

    run = tmp_path / "run"
    run.mkdir()
    with RunLock(run):  # this process holds the run
        assert main(train_args(run, 1)) == 2
        assert f"is in use by process {os.getpid()}" in capsys.readouterr().err
    assert not (run / LOCK_NAME).exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    assert main(train_args(run, 1)) == 0  # the dead process's lock is taken over
    assert not (run / LOCK_NAME).exists()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["pid"] for r in records] == [os.getpid()]


def test_checkpoints_by_wall_time_mid_iteration_and_resume_from_there(tmp_path):
    ckpt = tmp_path / "c.pt"
    s = tiny(checkpoint_every_s=1e-6)  # due after every inner step
    saves = []
    real_save = s.save
    s.save = lambda path: (saves.append((s.outer_iteration, s.inner_step)), real_save(path))[1]
    s.fit(progress=False, checkpoint_path=ckpt)
    assert (0, 1) in saves and (1, 1) in saves  # mid-iteration saves: a kill loses at most one inner step
    back = IDEMSampler.load(ckpt, device="cpu")
    assert back.outer_iteration == s.outer_iteration
    assert IDEMConfig(checkpoint_every_s=None).checkpoint_every_s is None
    with pytest.raises(ValueError, match="checkpoint_every_s"):
        IDEMConfig(checkpoint_every_s=0.0)


def test_run_lock_removes_the_directory_it_created_when_nothing_was_written(tmp_path):
    from idem_md.runlock import RunLock

    with RunLock(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()
    with RunLock(tmp_path / "kept"):
        (tmp_path / "kept" / "config.json").write_text("{}")
    assert (tmp_path / "kept" / "config.json").is_file()
