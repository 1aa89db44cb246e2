"""``idem-md evaluate`` (the metrics table of a sample file, its JSON report and plots) and ``idem-md demo``."""

from __future__ import annotations

from pathlib import Path

from ._common import RUN_CHECKPOINT, say, target_of

__all__ = ["cmd_evaluate", "cmd_demo"]


def _check_writable(path, overwrite: bool) -> None:
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")


def _run_sampler(run_dir, energy):
    """The sampler of ``--run`` (for NLL and ESS), or None without ``--run``."""
    if not run_dir:
        return None
    from ..sampler import IDEMSampler

    ckpt = Path(run_dir) / RUN_CHECKPOINT
    if not ckpt.is_file():
        raise FileNotFoundError(f"--run {run_dir}: no checkpoint there (expected {ckpt})")
    sampler = IDEMSampler.load(ckpt, energy=energy)
    if sampler.density is None:
        say(f"{run_dir} has no density model: NLL/ESS come from the score's probability-flow ODE, a "
            "diagnostic (idem-md sample --correct smc fits and saves a density model)")
    return sampler


def cmd_evaluate(args) -> int:
    """Print the metrics table of ``FILE`` against ``--reference`` (GMM-40: exact samples)."""
    from ..evaluation import evaluate
    from ..io import Samples

    energy = target_of(args).energy
    samples = Samples.load(args.file, n_particles=energy.n_particles, spatial_dim=energy.spatial_dim)
    reference = None
    if args.reference:
        reference = Samples.load(args.reference, n_particles=energy.n_particles, spatial_dim=energy.spatial_dim)
    elif energy.name == "gmm40":
        reference = energy.sample(max(len(samples), 1000))
    sampler = _run_sampler(args.run, energy)
    report = evaluate(samples, energy, reference, sampler=sampler, n_batches=args.batches, batch_size=args.batch_size,
                      likelihood_samples=args.likelihood_samples, trust_stored_energies=args.stored_energies)
    print(report.table())
    if args.json:
        _check_writable(args.json, args.overwrite)
        Path(args.json).write_text(report.to_json())
        say(f"report written to {args.json}")
    if args.plots:
        _write_evaluation_plots(Path(args.plots), energy, samples, reference, args.overwrite)
    return 0


def _write_evaluation_plots(outdir: Path, energy, samples, reference, overwrite: bool) -> None:
    from ..plots import distance_histogram, energy_histogram, gmm_scatter, save_figure

    data = {"samples": samples}
    if reference is not None:
        data["reference"] = reference
    outdir.mkdir(parents=True, exist_ok=True)
    save_figure(energy_histogram(_energies(data, energy)), outdir / "energy_histogram.png", overwrite=overwrite)
    if energy.is_particle_system:
        save_figure(distance_histogram(data, energy.n_particles, energy.spatial_dim),
                    outdir / "distance_histogram.png", overwrite=overwrite)
    elif hasattr(energy, "means"):
        save_figure(gmm_scatter(samples, energy.means), outdir / "gmm_scatter.png", overwrite=overwrite)
    say(f"plots written to {outdir}")


def _energies(data: dict, energy) -> dict:
    """Energies of every dataset: those a file holds, else computed in float64 (:func:`idem_md.samples.compute_energies`)."""
    import torch

    from ..io import Samples
    from ..samples import compute_energies

    out = {}
    for label, item in data.items():
        if isinstance(item, Samples) and item.energies is not None:
            out[label] = item.energies
        elif isinstance(item, Samples):
            out[label] = compute_energies(item.positions.to(torch.float64), energy)
        else:  # exact samples (GMM-40's reference): (N, dim)
            out[label] = compute_energies(torch.as_tensor(item).to(torch.float64).reshape(len(item), -1), energy)
    return out


def cmd_demo(args) -> int:
    """The demo (:func:`idem_md.demo.run_demo`): train, sample, MD and compare on DW-4 into ``--out``."""
    from ..demo import run_demo

    run_demo(Path(args.out), fast=args.fast, overwrite=args.overwrite, progress=not args.quiet)
    return 0
