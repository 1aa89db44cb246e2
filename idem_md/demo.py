"""``idem-md demo``: the main job on an embedded default (DW-4, a few minutes on 2 CPU cores).

Trains a small iDEM sampler on DW-4, writes its samples as a trajectory
(.dcd + .pdb, and .xyz), runs a short OpenMM Langevin baseline, evaluates both
against the long MD reference bundled with the package, and writes an energy
histogram PNG and a JSON report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


__all__ = ["run_demo", "DEMO_CONFIG", "load_bundled_reference"]

#: Small DW-4 settings: the paper's schedule (sigma 1e-5..3, eta 1) with a
#: smaller batch, K and network so that training takes about two minutes on 2 cores.
DEMO_CONFIG = dict(batch_size=128, num_mc_samples=256, inner_steps=40, outer_iterations=12, samples_per_outer=200,
                   buffer_size=5000, sde_steps=100, sample_batch_size=1000,
                   network_options=dict(hidden_irreps="16x0e + 4x1o", n_layers=2, radial_max=7.0))
_FAST_CONFIG = dict(batch_size=16, num_mc_samples=16, inner_steps=2, outer_iterations=1, samples_per_outer=32,
                    buffer_size=64, sde_steps=10, sample_batch_size=64,
                    network_options=dict(hidden_irreps="8x0e + 2x1o", n_layers=1))
_REFERENCE_FILE = Path(__file__).with_name("data") / "dw4_md_reference.npz"


def load_bundled_reference():
    """The DW-4 MD reference shipped with the package (a subset of ``data/md_dw4.npz``), as Samples."""
    from .io import Samples

    if not _REFERENCE_FILE.is_file():
        raise FileNotFoundError(f"bundled reference missing: {_REFERENCE_FILE} (reinstall idem_md)")
    return Samples.load(_REFERENCE_FILE, n_particles=4, spatial_dim=2)


def run_demo(out: Path, fast: bool = False, overwrite: bool = False, progress: bool = True) -> dict:
    """Run the demo into ``out``; returns a dict of the files written and the headline metrics."""
    from .energies import get_energy
    from .evaluation import evaluate
    from .md import MDConfig, run_md
    from .plots import energy_histogram, save_figure
    from .sampler import IDEMSampler

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    energy = get_energy("dw4")
    n_samples = 200 if fast else 1000

    _say(f"[1/4] training iDEM on DW-4 ({'fast smoke run' if fast else 'under a minute on 2 idle CPU cores'})")
    sampler = IDEMSampler(energy, config=_FAST_CONFIG if fast else DEMO_CONFIG, device="cpu")
    sampler.fit(progress=progress, checkpoint_path=out / "run" / "checkpoint.pt")

    _say(f"[2/4] sampling {n_samples} configurations with the reverse SDE")
    samples = sampler.sample(n_samples, progress=progress)
    files = [*samples.save(out / "idem_samples.dcd", overwrite=True), *samples.save(out / "idem_samples.xyz", overwrite=True)]

    _say("[3/4] running the OpenMM Langevin MD baseline")
    md_config = MDConfig(n_equilibration_steps=200, thinning=50, seed=0) if fast else MDConfig(seed=0, n_pilot_steps=300_000)
    md_run = run_md(energy, n_samples, md_config, progress=progress)
    md_samples = md_run.to_samples()
    files += md_samples.save(out / "md_samples.dcd", overwrite=True)

    _say("[4/4] evaluating both against the bundled MD reference")
    reference = load_bundled_reference()
    batch = min(1000, n_samples // 2)
    rep_idem = evaluate(samples, energy, reference, n_batches=2, batch_size=batch)
    rep_md = evaluate(md_samples, energy, reference, n_batches=2, batch_size=batch)
    fig = energy_histogram({"iDEM": samples.energies, "MD (OpenMM)": md_samples.energies,
                            "reference (long MD)": reference.energies})
    hist = out / "energy_histogram.png"
    save_figure(fig, hist, overwrite=True)
    summary = {"idem": rep_idem.to_dict(), "md": rep_md.to_dict(), "wall_time_s": time.perf_counter() - t0,
               "idem_energy_evaluations": dict(sampler.counters), "md_energy_evaluations": md_run.n_energy_evaluations}
    report = out / "report.json"
    report.write_text(json.dumps(summary, indent=2, default=float))

    print(_headline(rep_idem, rep_md, sampler, md_run))
    print(f"\nwrote: {', '.join(str(p) for p in files)}\n       {hist}\n       {report}\n"
          f"checkpoint: {out / 'run' / 'checkpoint.pt'}  (idem-md sample {out / 'run'} -n 1000 --out more.xyz)\n"
          f"total wall time {summary['wall_time_s']:.0f} s")
    return {"files": [str(p) for p in files], "histogram": str(hist), "report": str(report), "summary": summary}


def _headline(rep_idem, rep_md, sampler, md_run) -> str:
    rows = ["metric (vs reference)        iDEM              MD"]
    for key in ("energy_w2", "distance_w2", "distance_tvd", "coordinate_w2"):
        a, b = rep_idem.metrics.get(key), rep_md.metrics.get(key)
        if a and b:
            rows.append(f"{key:<28} {a.mean:.3f} ± {a.std:.3f}    {b.mean:.3f} ± {b.std:.3f}")
    rows.append(f"{'energy evaluations':<28} {sampler.energy_evaluations:<17,} {md_run.n_energy_evaluations:,}")
    return "\n".join(rows)


def _say(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)
