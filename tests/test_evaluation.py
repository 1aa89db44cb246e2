"""Evaluation reports (idem_md.evaluation) and mdtraj analysis (idem_md.analysis)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require_reference

from idem_md import get_energy
from idem_md.analysis import all_pairs, pair_distances, radial_distribution, to_trajectory
from idem_md.analysis.weights import effective_sample_size
from idem_md.evaluation import (
    EnergyBudget,
    EvaluationReport,
    LikelihoodResult,
    Metric,
    ReweightedResult,
    as_samples,
    compare_with_md,
    evaluate,
    importance_sampling_summary,
    importance_weights,
    log_importance_weights,
    reweighted_mean,
)
from idem_md.io import Samples
from idem_md.metrics import interatomic_distances


TINY_E3NN = dict(hidden_irreps="8x0e + 2x1o", n_layers=1, n_radial_basis=4, radial_hidden=8, time_embedding_dim=8)
TINY = dict(batch_size=8, num_mc_samples=16, inner_steps=2, samples_per_outer=8, sde_steps=8, buffer_size=32,
            outer_iterations=1, sample_batch_size=16, network_options=TINY_E3NN)


def _gmm_sets(n: int = 500):
    gmm = get_energy("gmm40")
    g = torch.Generator().manual_seed(0)
    return gmm, gmm.sample(n, generator=g), gmm.sample(n, generator=g)


def _dw4_configs(n: int, seed: int = 0) -> np.ndarray:
    """DW-4-like configurations: a jittered square of side ~4 (inside the wells), (n, 4, 2)."""
    square = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]])
    return square[None] + 0.3 * np.random.default_rng(seed).normal(size=(n, 4, 2))


# ------------------------------------------------------------------ GMM-40
def test_gmm_exact_samples_full_coverage_and_w2_ordering():
    gmm, a, b = _gmm_sets(2000)
    same = evaluate(a, gmm, b, n_batches=2, batch_size=1000)
    shifted = evaluate(a, gmm, b + 5.0, n_batches=2, batch_size=1000)
    assert same.metric("mode_coverage").mean == 1.0
    w2_same, w2_shift = same.metric("coordinate_w2").mean, shifted.metric("coordinate_w2").mean
    # exact vs exact sits at the finite-sample floor (~4.2 at batch 1000); a (5, 5) shift moves the mean by 7.1
    assert 2.5 < w2_same < 6.0 and w2_shift > w2_same + 2.0
    assert same.metric("energy_w2").mean < shifted.metric("energy_w2").mean
    m = same.metrics["energy_w2_idem"]
    assert m.n_batches == 2 and m.batch_size == 1000 and "squared" in m.definition
    assert same.metric("energy_w2").std > 0  # std over two different batches
    assert "geometric_w2" not in same.metrics and "distance_tvd" not in same.metrics  # not a particle system
    assert same.n_samples == 2000 and same.n_reference == 2000 and same.system == "gmm40"


def test_gmm_mode_coverage_detects_missing_modes():
    gmm, a, _ = _gmm_sets()
    first_two = a[(a[:, None] - gmm.means[:2]).norm(dim=-1).min(1).values < 2.0]  # samples of two modes only
    rep = evaluate(first_two, gmm)
    assert rep.metric("mode_coverage").mean == 2 / 40
    assert rep.n_reference is None and "coordinate_w2" not in rep.metrics


def test_report_json_round_trip_and_table():
    gmm, a, b = _gmm_sets(200)
    rep = evaluate(Samples.from_array(a, 1, 2, metadata={"energy_evaluations": 1234}), gmm, b,
                   n_batches=2, batch_size=100, label="model")
    back = EvaluationReport.from_json(rep.to_json())
    assert back == rep and back.to_dict() == rep.to_dict()
    assert rep.energy_evaluations.total == 1234
    assert rep.energy_evaluations.spent_by_evaluate == 400  # energies of both sets were missing
    table = rep.table()
    assert table.splitlines()[2] == "| metric | mean | std |"
    for name in rep.metrics:
        assert f"| {name} |" in table
    assert "| energy_evaluations | 1234 | - |" in table
    with pytest.raises(ValueError, match="does not know"):
        EvaluationReport.from_dict({**rep.to_dict(), "bogus": 1})


# ------------------------------------------------------------ typed report
def _old_format_report() -> dict:
    """A report as the version with string-keyed blocks wrote it (keys of docs/results/gmm40.json)."""
    metric = {"mean": 4.2, "std": 0.1, "definition": "exact W2 (reduced length)", "n_batches": 2, "batch_size": 100}
    return {"system": "gmm40", "n_samples": 200, "n_reference": 200, "label": "model", "notes": ["a note"],
            "metrics": {"coordinate_w2": metric, "mode_coverage": {**metric, "mean": 1.0, "n_batches": 1}},
            "energy_evaluations": {"total": 1234, "breakdown": {"estimator": 1000, "sampling": 234},
                                   "source": "sampler.counters at the start of evaluate()", "spent_by_evaluate": 12},
            "likelihood": {"nll": 3.5, "nll_median": 3.1, "nll_std_error": 0.2, "n_nll": 10, "ess": 0.25, "n_ess": 12,
                           "log_Z_estimate": -1.5, "method": "probability-flow ODE", "convention": "nats"},
            "reweighted": {"energy_mean": 2.0, "raw_energy_mean": 2.5, "ess": 0.25, "n": 12,
                           "definition": "self-normalised importance-sampling estimate"}}


def test_typed_report_attributes_and_metric_lookup():
    gmm, a, b = _gmm_sets(200)
    rep = evaluate(a, gmm, b, n_batches=2, batch_size=100)
    m = rep.metric("coordinate_w2")
    assert isinstance(m, Metric) and m is rep.metrics["coordinate_w2"]
    assert isinstance(m.mean, float) and m.n_batches == 2 and m.batch_size == 100 and "W2" in m.definition
    assert isinstance(rep.energy_evaluations, EnergyBudget) and rep.energy_evaluations.spent_by_evaluate == 400
    assert rep.energy_evaluations.total is None and rep.energy_evaluations.breakdown == {}
    with pytest.raises(KeyError, match=r"no metric 'geometric_w2' in this gmm40 report; it has \[.*'coordinate_w2'"):
        rep.metric("geometric_w2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.mean = 0.0


def test_deprecated_dict_view_warns_but_works():
    rep = EvaluationReport.from_dict(_old_format_report())
    with pytest.warns(DeprecationWarning, match=r"Metric\['mean'\] is deprecated; use the attribute .mean"):
        assert rep.metrics["coordinate_w2"]["mean"] == 4.2
    with pytest.warns(DeprecationWarning, match="LikelihoodResult"):
        assert rep.likelihood["ess"] == 0.25
    with pytest.warns(DeprecationWarning):
        assert rep.likelihood.get("nll") == 3.5
    with pytest.warns(DeprecationWarning):
        assert rep.energy_evaluations["total"] == 1234
    assert "ess" in rep.reweighted and "bogus" not in rep.reweighted  # membership needs no warning
    with pytest.raises(KeyError):
        rep.reweighted["bogus"]


def test_typed_blocks_json_round_trip():
    lik = LikelihoodResult(model="density_model", nll=1.5, nll_median=1.25, nll_std_error=0.125, n_nll=8,
                           n_nll_failed=2, nll_failure_fraction=0.2, ess=0.5, n_ess=9, n_ess_failed=1,
                           ess_failure_fraction=0.1, log_Z_estimate=-2.0, method="dopri5", convention="nats")
    rep = EvaluationReport(system="dw4", n_samples=10, n_reference=10,
                           metrics={"energy_w2": Metric(0.5, 0.25, "exact 1D W2 (reduced energy)", 2, 5)},
                           energy_evaluations=EnergyBudget(100, {"estimator": 100}, "test", 7), likelihood=lik,
                           score_likelihood=LikelihoodResult(model="score_probability_flow", ess=0.001, n_ess=9),
                           reweighted=ReweightedResult(-1.0, -0.5, 0.5, 9, "test"), notes=["n"], label="x")
    data = rep.to_dict()
    assert data["likelihood"]["n_ess_failed"] == 1 and data["metrics"]["energy_w2"]["std"] == 0.25
    assert json.loads(json.dumps(data)) == data  # plain data only
    back = EvaluationReport.from_json(rep.to_json())
    assert back == rep and back.to_dict() == data
    assert isinstance(back.likelihood, LikelihoodResult) and isinstance(back.score_likelihood, LikelihoodResult)
    assert isinstance(back.reweighted, ReweightedResult) and isinstance(back.energy_evaluations, EnergyBudget)
    assert isinstance(back.metric("energy_w2"), Metric)
    assert "| nll | 1.5 | 0.125 |" in back.table() and "| score_pf_ess (diagnostic) | 0.001 | - |" in back.table()


def test_old_format_dict_loads_into_typed_blocks():
    old = _old_format_report()
    rep = EvaluationReport.from_dict(old)
    assert rep.metric("coordinate_w2") == Metric(4.2, 0.1, "exact W2 (reduced length)", 2, 100)
    assert rep.energy_evaluations == EnergyBudget(1234, {"estimator": 1000, "sampling": 234},
                                                  "sampler.counters at the start of evaluate()", 12)
    lik = rep.likelihood
    assert (lik.nll, lik.nll_median, lik.ess, lik.n_ess) == (3.5, 3.1, 0.25, 12)
    assert lik.model is None and lik.n_nll_failed is None  # not recorded by that version
    assert rep.reweighted.energy_mean == 2.0 and rep.score_likelihood is None
    assert "| importance_ess | 0.25 | - |" in rep.table() and "| energy_evaluations | 1234 | - |" in rep.table()
    assert EvaluationReport.from_dict(rep.to_dict()) == rep
    with pytest.raises(ValueError, match=r"likelihood has keys \['bogus'\] that LikelihoodResult does not know"):
        EvaluationReport.from_dict({**old, "likelihood": {**old["likelihood"], "bogus": 1}})
    with pytest.raises(ValueError, match=r"metrics\['coordinate_w2'\] lacks the required keys \['std'\]"):
        EvaluationReport.from_dict({**old, "metrics": {"coordinate_w2": {k: v for k, v in
                                                                          old["metrics"]["coordinate_w2"].items()
                                                                          if k != "std"}}})
    with pytest.raises(TypeError, match="reweighted must be a ReweightedResult or a dict"):
        EvaluationReport.from_dict({**old, "reweighted": [1.0]})


@pytest.mark.parametrize("system", ["gmm40", "dw4", "lj13"])
def test_committed_result_files_load(system):
    path = Path(__file__).resolve().parents[1] / "docs" / "results" / f"{system}.json"
    if not path.is_file():
        pytest.skip(f"{path} not in this checkout")
    data = json.loads(path.read_text())
    for key in ("idem", "md"):
        if key in data:
            rep = EvaluationReport.from_dict(data[key])
            assert isinstance(rep.energy_evaluations, EnergyBudget)
            assert all(isinstance(m, Metric) for m in rep.metrics.values()) and rep.metrics
            assert f"N = {data[key]['n_samples']}" in rep.table()


def test_batch_size_shrinks_with_a_note():
    gmm, a, b = _gmm_sets(60)
    rep = evaluate(a, gmm, b)  # defaults: 5 batches of 1000
    assert rep.metric("coordinate_w2").batch_size == 12 and rep.metric("coordinate_w2").n_batches == 5
    assert any("batch_size shrunk from 1000 to 12" in n for n in rep.notes)
    tiny = evaluate(a[:6], gmm, b[:6])
    assert tiny.metric("coordinate_w2").n_batches == 1 and tiny.metric("coordinate_w2").std == 0.0


# -------------------------------------------------------------------- DW-4
def test_dw4_reference_subsets():
    dw4 = get_energy("dw4")
    ref = np.load(require_reference("test_split_DW4.npy"))  # (10000, 8), not centred
    a, b = ref[:80], ref[80:160]
    self_rep = evaluate(a, dw4, a, n_batches=1, batch_size=80, geometric_max_samples=None)
    for name in ("energy_w2", "energy_w2_idem", "distance_w2", "distance_tvd"):
        assert self_rep.metric(name).mean == 0.0, name
    for name in ("coordinate_w2", "geometric_w2"):
        assert self_rep.metric(name).mean < 1e-6, name
    other = evaluate(a, dw4, b, n_batches=2, batch_size=40, geometric_max_samples=20)
    for name in ("coordinate_w2", "geometric_w2", "energy_w2", "distance_w2", "distance_tvd"):
        assert other.metric(name).mean > 0, name
    assert other.metric("geometric_w2").mean < other.metric("coordinate_w2").mean  # alignment only lowers
    assert any("subsampled to 20" in n for n in other.notes)
    assert abs(other.metric("energy_mean").mean - (-22.45)) < 1.5  # README: mean E of the file


def test_dw4_uncentred_input_gives_centred_coordinate_w2():
    dw4 = get_energy("dw4")
    x = _dw4_configs(40)
    moved = x + np.array([3.0, -2.0])  # a rigid translation of every configuration
    rep = evaluate(x, dw4, moved, n_batches=1, batch_size=40, geometric_max_samples=None)
    assert rep.metric("coordinate_w2").mean < 1e-6
    assert rep.metric("energy_w2").mean < 1e-9


# --------------------------------------------------------------- likelihood
def _record_model_samples(monkeypatch, sampler) -> list:
    """Record what ``sampler.sample_with_log_prob`` returns to evaluate: the draws its ESS weights."""
    seen: list = []
    original = sampler.sample_with_log_prob

    def recording(*args, **kwargs):
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(sampler, "sample_with_log_prob", recording)
    return seen


def _check_ess_of(lik, reweighted, draws, kT):
    """The block's ESS, log Z and reweighted mean are those of w = exp(-E/kT) / q of exactly these draws."""
    (model_samples, log_q), = draws
    e = model_samples.energies.double()
    lw = -e / kT - log_q.double()
    assert lik.ess == pytest.approx(effective_sample_size(lw), rel=1e-12)
    assert lik.log_Z_estimate == pytest.approx(float(torch.logsumexp(lw, 0)) - math.log(len(lw)), rel=1e-12)
    assert reweighted.energy_mean == pytest.approx(reweighted_mean(e, lw), rel=1e-12)
    assert reweighted.raw_energy_mean == pytest.approx(float(e.mean()), rel=1e-12)


@pytest.fixture(scope="module")
def tiny_dw4_sampler():
    pytest.importorskip("e3nn")
    from idem_md.sampler import IDEMSampler

    sampler = IDEMSampler("dw4", config=TINY, device="cpu")
    sampler.fit(progress=False)
    return sampler


def test_likelihood_and_ess_with_a_tiny_sampler(tiny_dw4_sampler, monkeypatch):
    s = tiny_dw4_sampler
    draws = _record_model_samples(monkeypatch, s)
    samples = s.sample(16, progress=False)
    ref = _dw4_configs(20, seed=1)
    before = dict(s.counters)
    rep = evaluate(samples, s.energy, ref, sampler=s, n_batches=1, batch_size=16, likelihood_samples=12,
                   ode_steps=4, geometric_max_samples=8)
    lik = rep.likelihood
    assert lik is not None and math.isfinite(lik.nll) and math.isfinite(lik.nll_std_error)
    assert lik.n_nll == 12 and lik.n_ess == 12
    _check_ess_of(lik, rep.reweighted, draws, s.energy.kT)
    assert lik.n_nll_failed == 0 and lik.n_ess_failed == 0 and lik.model == "score_probability_flow"
    for words in ("probability-flow ODE", "Euler, 4 steps", "exact divergence", "6-dimensional centre-of-mass-free"):
        assert words in lik.method
    rw = rep.reweighted
    assert rw.ess == lik.ess and math.isfinite(rw.energy_mean) and math.isfinite(rw.raw_energy_mean)
    assert rep.energy_evaluations.source == "samples.metadata['energy_evaluations']"
    assert rep.energy_evaluations.breakdown == before  # the counters when the samples were drawn
    # evaluate's own cost: the 16 samples' energies (recomputed), 20 reference energies, 12 model samples for the ESS
    assert rep.energy_evaluations.spent_by_evaluate == 16 + 20 + 12
    assert s.counters["evaluation"] == before["evaluation"] + 12
    assert "| nll |" in rep.table() and "| importance_ess |" in rep.table()
    assert EvaluationReport.from_json(rep.to_json()) == rep


def test_hutchinson_method_is_named_and_no_reference_skips_nll(tiny_dw4_sampler, monkeypatch):
    s = tiny_dw4_sampler
    draws = _record_model_samples(monkeypatch, s)
    rep = evaluate(_dw4_configs(8), s.energy, sampler=s, likelihood_samples=6, ode_steps=2, divergence="hutchinson")
    assert rep.likelihood.nll is None and "Hutchinson" in rep.likelihood.method
    assert rep.likelihood.n_nll == 0 and rep.likelihood.nll_failure_fraction is None and rep.likelihood.n_ess == 6
    _check_ess_of(rep.likelihood, rep.reweighted, draws, s.energy.kT)
    assert evaluate(_dw4_configs(8), s.energy, sampler=s, likelihood=False).likelihood is None


def test_importance_weights_gaussian_pair():
    # q = N(0, 2^2), p~ = exp(-x^2 / 2): E_q[w^2] / E_q[w]^2 = sigma_q / sqrt(2 - 1/sigma_q^2), Z = sqrt(2 pi)
    rng = np.random.default_rng(0)
    sq = 2.0
    x = sq * rng.normal(size=200_000)
    log_q = -0.5 * (x / sq) ** 2 - math.log(sq * math.sqrt(2 * math.pi))
    log_p = -0.5 * x**2
    out = importance_sampling_summary(log_p, log_q, values=x**2)
    assert out["ess"] == pytest.approx(math.sqrt(2 - 1 / sq**2) / sq, rel=0.02)
    assert out["log_Z"] == pytest.approx(0.5 * math.log(2 * math.pi), abs=0.01)
    assert out["reweighted_mean"] == pytest.approx(1.0, abs=0.03)  # E_p[x^2] = 1, while E_q[x^2] = 4
    lw = log_importance_weights(-0.5 * (x - 1.0) ** 2, log_q)  # p~ centred at 1
    assert reweighted_mean(x, lw) == pytest.approx(1.0, abs=0.03)
    w = importance_weights(log_p, log_q)
    assert w.sum() == pytest.approx(1.0) and (w > 0).all()


def test_importance_weights_limits_and_errors():
    lq = np.log(np.full(50, 0.1))
    w = importance_weights(lq + 3.0, lq)  # p proportional to q: equal weights, ESS 1
    assert np.allclose(w, 1 / 50)
    assert importance_sampling_summary(lq + 3.0, lq)["ess"] == pytest.approx(1.0)
    lp = np.full(50, -np.inf)
    lp[7] = 0.0  # one sample carries all the weight
    assert importance_sampling_summary(lp, lq)["ess"] == pytest.approx(1 / 50)
    assert reweighted_mean(np.arange(50.0), lp - lq) == pytest.approx(7.0)
    assert importance_weights(np.array([-1e4, -1e4 - 1.0]), np.zeros(2))[0] == pytest.approx(1 / (1 + math.exp(-1)))
    with pytest.raises(ValueError, match="same shape"):
        log_importance_weights(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="log_q contains"):
        log_importance_weights(np.zeros(3), np.array([0.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match="every"):
        importance_sampling_summary(np.full(3, -np.inf), np.zeros(3))


@pytest.mark.parametrize("mu", [0.5, 1.0])
def test_ess_of_shifted_gaussians_is_exp_minus_mu_squared(mu):
    # q = N(0, 1), p = N(mu, 1): w ∝ exp(mu x), E_q[w^2] / E_q[w]^2 = exp(mu^2), so the normalised ESS -> exp(-mu^2)
    n = 200_000
    x = np.random.default_rng(1).normal(size=n)
    ess = importance_sampling_summary(-0.5 * (x - mu) ** 2, -0.5 * x**2)["ess"]
    # delta method: the relative error is that of mean(w^2) (w with E w = 1): sqrt((E w^4 - E^2 w^2) / n) / E w^2
    rel_sd = math.sqrt((math.exp(6 * mu**2) - math.exp(2 * mu**2)) / n) / math.exp(mu**2)
    assert ess == pytest.approx(math.exp(-mu**2), rel=5 * rel_sd)
    assert abs(ess - math.exp(-(mu + 0.1) ** 2)) > 5 * rel_sd * ess  # the tolerance separates neighbouring mu


def test_ess_known_limits():
    lq = np.random.default_rng(2).normal(size=40)
    assert importance_sampling_summary(lq, lq)["ess"] == 1.0  # equal weights: exactly 1
    lp = lq.copy()
    lp[5] += 60.0  # one weight e^60 times the others: ESS = (1 + 39 e^-60)^2 / (40 (1 + 39 e^-120)) -> 1/40
    assert importance_sampling_summary(lp, lq)["ess"] == pytest.approx(1 / 40, rel=1e-12)
    two = np.array([0.0, math.log(3.0)])  # weights 1 and 3: (1 + 3)^2 / (2 (1 + 9)) = 0.8
    assert importance_sampling_summary(two, np.zeros(2))["ess"] == pytest.approx(0.8, rel=1e-12)


# ----------------------------------------------------------- MD comparison
class _FakeMDRun:
    """Duck-typed MDRun: what compare_with_md and evaluate read from run_md's result."""

    def __init__(self, positions: np.ndarray, energy):
        self.positions = torch.as_tensor(positions, dtype=torch.float32)
        self.energies = energy.energy(self.positions.double()).float()
        self.n_energy_evaluations = 5000

    def to_samples(self) -> Samples:
        return Samples(self.positions, self.energies,
                       {"system": "dw4", "source": "md", "energy_evaluations": self.n_energy_evaluations})


def test_compare_with_md_tables_reports_and_figures():
    from matplotlib.figure import Figure

    dw4 = get_energy("dw4")
    idem = Samples.from_array(_dw4_configs(40, seed=2), 4, 2, metadata={"energy_evaluations": {"estimator": 900}})
    md = _FakeMDRun(_dw4_configs(40, seed=3), dw4)
    kw = dict(n_batches=2, batch_size=20, geometric_max_samples=8)
    table, reports, figs = compare_with_md(idem, md, dw4, **kw)
    assert set(reports) == {"idem", "md"} and set(figs) == {"energy_histogram", "distance_histogram"}
    assert all(isinstance(f, Figure) for f in figs.values())
    assert table.splitlines()[0] == "| metric | iDEM | MD |"
    assert "| energy_evaluations | 900 | 5000 |" in table and "| coordinate_w2 |" in table
    # without a reference each is scored against the other: symmetric metrics agree
    idem_rep, md_rep = reports["idem"], reports["md"]
    assert md_rep.metrics["energy_w2"] == idem_rep.metrics["energy_w2"] and md_rep.n_reference == 40
    assert md_rep.metric("reference_energy_mean").mean == idem_rep.metric("energy_mean").mean
    assert idem_rep.metric("reference_energy_mean").mean == md_rep.metric("energy_mean").mean
    assert md_rep.metric("energy_mean").mean == pytest.approx(float(md.energies.double().mean()), rel=1e-6)
    assert any("compared against the MD samples" in n for n in reports["idem"].notes)
    # with a reference, the histograms gain its line and both reports count it
    _, reports, figs = compare_with_md(idem, md, dw4, reference=_dw4_configs(40, seed=4), **kw)
    assert reports["idem"].n_reference == 40 and reports["md"].n_reference == 40
    assert len(figs["energy_histogram"].axes[0].patches) == 3


# ---------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors():
    dw4, gmm = get_energy("dw4"), get_energy("gmm40")
    good = _dw4_configs(10)
    with pytest.raises(ValueError, match="samples does not hold configurations of dw4"):
        evaluate(np.zeros((10, 10)), dw4)
    with pytest.raises(ValueError, match="reference holds configurations of 5 particles"):
        evaluate(good, dw4, Samples(torch.zeros(10, 5, 2)))
    with pytest.raises(ValueError, match="samples is empty"):
        evaluate(np.zeros((0, 8)), dw4)
    with pytest.raises(ValueError, match="samples is empty"):
        evaluate(Samples(torch.zeros(0, 4, 2)), dw4)
    with pytest.raises(TypeError, match="energy must be"):
        evaluate(good, object())
    with pytest.raises(ValueError, match="n_batches must be a positive int"):
        evaluate(good, dw4, good, n_batches=0)
    with pytest.raises(ValueError, match="likelihood=True needs a trained sampler"):
        evaluate(good, dw4, likelihood=True)
    with pytest.raises(ValueError, match="divergence"):
        evaluate(good, dw4, divergence="trace")
    with pytest.raises(TypeError, match="samples must be Samples"):
        as_samples("not samples", dw4)

    class OtherSystemSampler:
        energy = gmm

        def log_prob(self, x):  # pragma: no cover - never reached
            raise AssertionError

        def sample(self, n):  # pragma: no cover - never reached
            raise AssertionError

        def sample_with_log_prob(self, n):  # pragma: no cover - never reached
            raise AssertionError

    with pytest.raises(ValueError, match="another system"):
        evaluate(good, dw4, sampler=OtherSystemSampler())


# ------------------------------------------------------------ mdtraj analysis
def _triangle_samples() -> Samples:
    """Two frames of a 3-4-5 right triangle in 3D (second one rotated and translated)."""
    tri = torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    rot = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return Samples(torch.stack([tri, tri @ rot.T + 1.5]), metadata={"system": "lj3"})


def test_pair_distances_on_a_hand_made_trajectory():
    traj = to_trajectory(_triangle_samples())
    assert traj.n_frames == 2 and traj.n_atoms == 3
    d = pair_distances(traj)  # pairs (0,1), (0,2), (1,2)
    np.testing.assert_allclose(d, [[3.0, 4.0, 5.0]] * 2, atol=1e-5)
    np.testing.assert_allclose(pair_distances(traj, pairs=[[2, 1]]), [[5.0], [5.0]], atol=1e-5)
    assert all_pairs(3).tolist() == [[0, 1], [0, 2], [1, 2]]
    with pytest.raises(ValueError, match="pairs holds atom indices outside"):
        pair_distances(traj, pairs=[[0, 3]])


@pytest.mark.parametrize("shape", [(6, 4, 2), (6, 13, 3)])
def test_pair_distances_match_metrics(shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    s = Samples(x)
    expected = interatomic_distances(x.double().numpy())
    np.testing.assert_allclose(pair_distances(s), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pair_distances(to_trajectory(x.reshape(6, -1), *shape[1:])), expected, atol=1e-5)
    md = _FakeMDRun(_dw4_configs(6), get_energy("dw4"))
    np.testing.assert_allclose(pair_distances(md), interatomic_distances(md.positions.double().numpy()), atol=1e-5)


def test_radial_distribution_of_a_cluster_3d_and_2d():
    traj = to_trajectory(_triangle_samples())
    # bins of width 0.5 whose edges avoid the distances 3, 4, 5 (a distance on an edge is binned by rounding)
    r, g = radial_distribution(traj, r_range=(0.25, 6.25), n_bins=12)
    edges = np.linspace(0.25, 6.25, 13)
    shell = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    np.testing.assert_allclose(r, 0.5 * (edges[1:] + edges[:-1]), atol=1e-6)
    assert np.count_nonzero(g) == 3  # distances 3, 4, 5 fall in bins 5, 7, 9
    for k in (5, 7, 9):
        assert g[k] == pytest.approx((1 / 3) / shell[k], rel=1e-5)
    assert float(np.sum(g * shell)) == pytest.approx(1.0, rel=1e-5)  # every pair distance lies in range
    # 2D (z = 0): annulus shells, normalised the same way
    flat = Samples(torch.tensor([[[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]]]))
    r2, g2 = radial_distribution(flat, r_range=(0.25, 6.25), n_bins=12)
    annulus = np.pi * (edges[1:] ** 2 - edges[:-1] ** 2)
    assert g2[5] == pytest.approx((1 / 3) / annulus[5]) and float(np.sum(g2 * annulus)) == pytest.approx(1.0)
    # half the range loses the distance-5 pair from the sum
    _, g3 = radial_distribution(traj, r_range=(0.0, 4.5), n_bins=9)
    assert float(np.sum(g3 * 4 / 3 * np.pi * np.diff(np.linspace(0, 4.5, 10) ** 3))) == pytest.approx(2 / 3, rel=1e-5)


def test_radial_distribution_periodic_uses_mdtraj_and_errors():
    import mdtraj as md

    base = to_trajectory(Samples(torch.rand(3, 8, 3, generator=torch.Generator().manual_seed(2)) * 2.0))
    nm = 0.1  # mdtraj holds one reduced length as 0.1 nm (1 A: the single file convention, docs/units.md)
    boxed = md.Trajectory(base.xyz, base.topology, unitcell_lengths=np.full((3, 3), 2.0 * nm),
                          unitcell_angles=np.full((3, 3), 90.0))
    r, g = radial_distribution(boxed, r_range=(0.0, 1.0), n_bins=10)
    r_md, g_md = md.compute_rdf(boxed, all_pairs(8), r_range=(0.0, 1.0 * nm), n_bins=10)
    np.testing.assert_allclose(r, r_md / nm, rtol=1e-6)
    np.testing.assert_allclose(g, g_md, rtol=1e-6)  # periodic g(r) is dimensionless: unchanged
    with pytest.raises(ValueError, match="periodic=True needs a trajectory with unit cell"):
        radial_distribution(base, periodic=True)
    with pytest.raises(ValueError, match="r_range"):
        radial_distribution(base, r_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="n_bins"):
        radial_distribution(base, n_bins=0)
    with pytest.raises(ValueError, match="n_particles"):
        to_trajectory(np.zeros((2, 6)))


def test_density_model_is_the_likelihood_when_the_sampler_has_one(tiny_dw4_sampler):
    import copy

    s = copy.deepcopy(tiny_dw4_sampler)
    s.fit_density(48, config=dict(hidden_dim=8, n_layers=1, steps=5), progress=False)
    ref = _dw4_configs(10, seed=2)
    rep = evaluate(ref, s.energy, ref, sampler=s, n_batches=1, batch_size=10, likelihood_samples=10,
                   score_likelihood=True, ode_steps=3, geometric_max_samples=5)
    lik = rep.likelihood
    assert lik.model == "density_model" and "flow matching" in lik.method and "dopri5" in lik.method
    expected = -s.density.log_prob(torch.as_tensor(ref)).mean()
    assert lik.nll == pytest.approx(float(expected), abs=1e-4)  # the same density, no other transformation
    assert lik.n_nll + lik.n_nll_failed == 10 and lik.n_ess + lik.n_ess_failed == 10
    assert rep.score_likelihood.model == "score_probability_flow" and "diagnostic" in rep.score_likelihood.method
    assert "score_pf_nll (diagnostic)" in rep.table()
    assert rep.energy_evaluations.spent_by_evaluate >= 10 + 10  # reference energies + the density's ESS draws
    assert EvaluationReport.from_json(rep.to_json()) == rep


def test_stored_energies_are_recomputed_and_an_edited_one_is_reported():
    gmm, a, b = _gmm_sets(200)
    e = gmm.energy(torch.as_tensor(a).reshape(200, 2)).clone()
    e[3] = 1e6  # an edited file
    edited = Samples(torch.as_tensor(a).reshape(200, 1, 2), e)
    with pytest.warns(UserWarning, match="1 of 200 stored energies disagree"):
        rep = evaluate(edited, gmm, b, n_batches=1, batch_size=100)
    assert rep.metric("energy_mean").mean < 100 and any("disagree" in n for n in rep.notes)
    trusted = evaluate(edited, gmm, b, n_batches=1, batch_size=100, trust_stored_energies=True)
    assert trusted.metric("energy_mean").mean > 1000  # what the flag asks for: the file's numbers
