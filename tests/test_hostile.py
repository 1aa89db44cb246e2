"""Hostile inputs (issue #17): each gives a clear one-line error or a partial result with a count.

The list lives in ``scripts/hostile_inputs.py`` (whose tally docs/reliability.md quotes); here every
case must give its expected outcome. Below it, the pre-flight checks in detail.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from idem_md import IDEMSampler
from idem_md.preflight import (InsufficientMemoryError, MemoryEstimate, TargetCheckError, available_memory,
                               check_memory, check_target)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "hostile_inputs.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("idem_hostile_inputs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


hostile = _load_script()
CASES = hostile.cases()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    torch.set_num_threads(1)
    return tmp_path_factory.mktemp("hostile")


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}: {c.name}" for c in CASES])
def test_hostile_input_gives_a_clear_error_or_a_partial_result(case, workdir, monkeypatch):
    monkeypatch.chdir(workdir)  # the pickle case's payload would write here if it ran
    outcome, message = hostile.classify(case, workdir)
    assert outcome == case.expect, message
    assert not (workdir / "HOSTILE_PICKLE_RAN").exists()


def test_the_list_covers_every_kind_of_the_issue():
    kinds = {c.kind for c in CASES}
    assert kinds == {"cli argument", "config value", "bad target", "sampling", "memory", "file"}
    assert len(CASES) >= 60


def test_classify_calls_a_bare_exception_a_traceback_and_no_warning_silent(workdir):
    boom = hostile.Case("x", "index error", lambda w: [][1], "clear error", ".")
    quiet = hostile.Case("x", "no warning", lambda w: 1, "partial", "dropped")
    vague = hostile.Case("x", "vague", lambda w: (_ for _ in ()).throw(ValueError("bad\nvalue")), "clear error", ".")
    assert hostile.classify(boom, workdir)[0] == "traceback"
    assert hostile.classify(quiet, workdir)[0] == "silent"
    assert hostile.classify(vague, workdir)[0] == "unclear error"


# ------------------------------------------------------------------ the pre-flight checks in detail
TINY = hostile.TINY


def test_target_check_is_counted_once_and_not_repeated_on_resume(tmp_path):
    s = IDEMSampler("dw4", config={**TINY, "outer_iterations": 1}, device="cpu")
    s.fit(progress=False, checkpoint_path=tmp_path / "c.pt")
    assert s.counters["target_check"] == min(TINY["batch_size"], 16)
    resumed = IDEMSampler.load(tmp_path / "c.pt", device="cpu")
    resumed.fit(2, progress=False)
    assert resumed.counters["target_check"] == s.counters["target_check"]  # a resumed run is not re-checked


def test_target_check_keeps_the_random_stream():
    a = IDEMSampler("dw4", config=TINY, device="cpu")
    b = IDEMSampler("dw4", config=TINY, device="cpu")
    a.preflight()
    a.fit(progress=False)
    b._preflight_done = True  # skip the checks: the training must be the same
    b.fit(progress=False)
    assert torch.equal(a.buffer.contents(), b.buffer.contents())


def test_check_target_accepts_some_nonfinite_rows_and_names_the_target():
    from idem_md.energies.double_well import MultiDoubleWell

    class HalfNaN(MultiDoubleWell):  # NaN energy and forces where x[:, 0, 0] > 0
        def _energy_and_forces(self, x):
            e, f = super()._energy_and_forces(x)
            bad = x[:, 0, 0] > 0
            return torch.where(bad, float("nan"), e), torch.where(bad[:, None, None], float("nan"), f)

    target = HalfNaN(4, 2, name="half-nan", backend="torch")
    x = torch.randn(6, 4, 2)
    x[:3, 0, 0], x[3:, 0, 0] = 1.0, -1.0
    assert check_target(target, x) == 6  # some finite rows: accepted (the estimator gives NaN rows zero weight)
    with pytest.raises(TargetCheckError, match="'half-nan' gave non-finite energies .* all 3 configurations"):
        check_target(target, x[:3])


def test_zero_ess_stops_after_the_stated_number_of_steps():
    target = hostile._turns_nan_after_first_batch()
    s = IDEMSampler(target, config={**TINY, "inner_steps": 50}, device="cpu")
    s.max_zero_ess_steps = 3
    with pytest.raises(FloatingPointError, match="ESS was 0 for 3 consecutive inner steps"):
        s.fit(progress=False)
    assert s.inner_step == 2 and s.counters["estimator"] == 3 * TINY["batch_size"] * TINY["num_mc_samples"]


def test_memory_estimate_grows_with_batch_and_refuses_naming_the_field(monkeypatch):
    monkeypatch.setenv("IDEM_MD_AVAILABLE_MEMORY", str(50 * 2**20))  # a 50 MiB machine
    assert available_memory() == 50 * 2**20
    IDEMSampler("dw4", config=TINY, device="cpu").preflight()  # the tiny run fits
    with pytest.raises(InsufficientMemoryError, match=r"batch_size=100000.*reduce batch_size"):
        IDEMSampler("dw4", config={**TINY, "batch_size": 100_000}, device="cpu").preflight()


def test_check_memory_message_is_one_line_and_lists_the_large_parts():
    est = MemoryEstimate({"network activations (batch_size)": 3e9, "estimator chunk (estimator_chunk_size)": 1e9,
                          "tiny (nothing)": 1.0})
    with pytest.raises(InsufficientMemoryError) as info:
        check_memory(est, "training", available=10**9)
    msg = str(info.value)
    assert "\n" not in msg and "reduce batch_size or estimator_chunk_size" in msg and "tiny" not in msg
    check_memory(est, "training", available=None if available_memory() is None else 10**12)


def test_sample_progress_counts_samples(capsys):
    s = IDEMSampler("dw4", config=TINY, device="cpu")
    s.sample(12, progress=True, steps=20)
    err = capsys.readouterr().err
    assert "reverse SDE (20 steps)" in err and "12/12" in err


def test_train_zero_outer_iterations_is_a_valid_run_without_plot(tmp_path, capsys):
    from idem_md.cli import main

    run = tmp_path / "r"
    assert main(["train", "--system", "dw4", "--out", str(run), "--quiet", *hostile.TINY_SET,
                 "--outer-iterations", "0"]) == 0
    assert "trained dw4: 0 outer iterations" in capsys.readouterr().err
    assert (run / "checkpoint.pt").is_file() and not (run / "plots").exists()
