"""``idem-md sample`` (a trained run's samples, optionally corrected) and ``idem-md md`` (the MD baseline)."""

from __future__ import annotations

from pathlib import Path

from ._common import RUN_CHECKPOINT, say, target_of

__all__ = ["cmd_sample", "cmd_md"]


def _load_run(args) -> tuple[Path, Path]:
    """The run directory and its checkpoint, both checked to exist."""
    run = Path(args.run_dir)
    ckpt = run / RUN_CHECKPOINT
    if not run.is_dir():
        raise FileNotFoundError(f"run directory not found: {run}")
    if not ckpt.is_file():
        raise FileNotFoundError(f"no checkpoint in {run} (expected {ckpt}); train first with idem-md train")
    return run, ckpt


def cmd_sample(args) -> int:
    """Draw ``-n`` samples of the run ``RUN_DIR``, corrected as ``--correct`` says, into ``--out``."""
    from ..correct import CorrectionOptions, corrected_samples
    from ..io import check_output_path
    from ..sampler import IDEMSampler
    from ..targets import load_run_target, write_topology_beside

    run, ckpt = _load_run(args)
    check_output_path(args.out, args.overwrite)
    options = CorrectionOptions(method=args.correct, mala_steps=args.mala_steps, relax_steps=args.relax_steps,
                                cess_target=args.cess_target, weighted=args.weighted, seed=args.seed,
                                anneal=args.anneal, oversample=args.oversample)
    target = load_run_target(run)  # None: an older run of a registered system (its name is in the checkpoint)
    sampler = IDEMSampler.load(ckpt, energy=None if target is None else target.energy, device=args.device)
    if args.correct == "smc" and sampler.density is None:
        say(f"{run} has no density model yet: fitting one on {args.density_samples} samples "
            "(flow matching, no energy evaluations); it is saved into the run")
        sampler.fit_density(args.density_samples, steps=args.density_steps, progress=not args.quiet)
        sampler.save(ckpt)
    samples = corrected_samples(sampler, args.n, options, steps=args.steps, progress=not args.quiet)
    written = samples.save(args.out, overwrite=args.overwrite)
    write_topology_beside(written, target)
    info = samples.metadata.get("correction")
    if info:
        figures = [f"{k} {info[k]:.4g}" for k in ("log_Z", "log_Z_error", "importance_ess", "acceptance_rate",
                                                  "would_be_acceptance") if isinstance(info.get(k), float)]
        say(f"correction {args.correct}: {info['n_energy_evaluations']:,} energy evaluations"
            + (f", {', '.join(figures)}" if figures else ""))
    say(f"wrote {len(samples)} samples: {', '.join(str(p) for p in written)}")
    return 0


def cmd_md(args) -> int:
    """Langevin MD of the ``--system`` target: ``-n`` thinned samples into ``--out``."""
    from ..io import check_output_path
    from ..md import MDConfig, run_md
    from ..targets import write_topology_beside

    target = target_of(args)
    energy = target.energy
    check_output_path(args.out, args.overwrite)
    config = MDConfig(seed=args.seed, timestep=args.timestep, friction=args.friction, engine=args.engine,
                      n_chains=args.chains)
    run = run_md(energy, args.n, config, progress=not args.quiet)
    written = run.to_samples().save(args.out, overwrite=args.overwrite)
    write_topology_beside(written, target)
    say(f"MD: {run.n_samples} samples, thinning {run.thinning} steps, {run.n_energy_evaluations:,} energy "
        f"evaluations, {run.wall_time:.1f} s; wrote {', '.join(str(p) for p in written)}")
    return 0
