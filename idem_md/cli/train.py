"""``idem-md train``: a run directory holding the config, the checkpoint, ``metrics.jsonl`` (one
:class:`~idem_md.training.OuterIterationRecord` per line) and the training curves; the same command
resumes it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ._common import RUN_CHECKPOINT, RUN_CONFIG, RUN_METRICS, CLIError, say, target_of
from .overrides import training_overrides

__all__ = ["cmd_train"]


def cmd_train(args) -> int:
    """Train (or resume) the run ``args.out``; under torchrun every process takes part, rank 0 holds the run lock."""
    from ..config import preset
    from ..distributed import DistContext, init_distributed_from_env

    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _relaunch_with_torchrun(args.nproc)
    distributed = init_distributed_from_env()
    device = args.device
    if distributed and device in (None, "cuda") and _cuda_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    target = target_of(args)
    energy = target.energy
    try:
        config = preset(energy.name, particle_system=energy.is_particle_system, cpu=getattr(args, "cpu_preset", False),
                        **training_overrides(args))
    except ValueError as exc:
        if getattr(args, "cpu_preset", False) and "CPU preset" in str(exc):
            raise CLIError(f"--cpu-preset: {exc}") from None
        raise
    config = _with_target_network(config, target)
    args.target = target
    run = Path(args.out)
    if DistContext.detect().is_main:
        from ..runlock import RunLock

        with RunLock(run):
            return _train(args, energy, config, run, device)
    return _train(args, energy, config, run, device)


def _open_run(args, energy, config, run: Path, device):
    """The run's sampler: resumed from its checkpoint (same settings only), or new (then the run is created)."""
    from ..distributed import DistContext
    from ..sampler import IDEMSampler

    ckpt = run / RUN_CHECKPOINT
    if ckpt.exists():
        sampler = IDEMSampler.load(ckpt, energy=energy, device=device)
        resumable = ("outer_iterations", "energy_budget")  # a resumed run may go further
        mine = {k: v for k, v in config.to_dict().items() if k not in resumable}
        theirs = {k: v for k, v in sampler.config.to_dict().items() if k not in resumable}
        if mine != theirs:
            changed = sorted(k for k in mine if mine[k] != theirs.get(k))
            raise CLIError(f"{run} holds a run with a different config ({', '.join(changed)}); "
                           "use a new --out or the same settings to resume")
        sampler.config = sampler.config.replace(outer_iterations=config.outer_iterations,
                                                energy_budget=config.energy_budget)
        say(f"resuming {run} at outer iteration {sampler.outer_iteration}/{config.outer_iterations}")
        return sampler
    sampler = IDEMSampler(energy, config, device=device)
    sampler.preflight()  # target and memory checks before anything is written into the run
    if DistContext.detect().is_main:
        run.mkdir(parents=True, exist_ok=True)
        (run / RUN_CONFIG).write_text(json.dumps({"system": energy.name, "config": config.to_dict()}, indent=2))
        _save_target(args, run)
    return sampler


def _train(args, energy, config, run: Path, device) -> int:
    ckpt, log_path = run / RUN_CHECKPOINT, run / RUN_METRICS
    sampler = _open_run(args, energy, config, run, device)
    if sampler.dist.is_main:  # the log holds exactly the checkpoint's history (no duplicates after a kill)
        _rewrite_log(log_path, sampler.history)

    def log_record(s, record):
        if s.dist.is_main:
            with log_path.open("a") as fh:
                fh.write(json.dumps({**record.to_dict(), "pid": os.getpid()}) + "\n")

    try:
        sampler.fit(checkpoint_path=ckpt, callbacks=[log_record], progress=not args.quiet)
    except (KeyboardInterrupt, SystemExit) as exc:  # SIGINT / SIGTERM: fit() saved the checkpoint first
        what = "terminated (SIGTERM)" if isinstance(exc, SystemExit) else "interrupted"
        say(f"{what}: checkpoint saved at {ckpt} (outer iteration {sampler.outer_iteration}, "
            f"inner step {sampler.inner_step}); run the same command to resume")
        return 143 if isinstance(exc, SystemExit) else 130
    if sampler.dist.is_main:
        from ..plots import save_figure, training_curves

        if sampler.history:  # no curves to draw after 0 outer iterations
            (run / "plots").mkdir(parents=True, exist_ok=True)
            save_figure(training_curves(sampler.history),
                        run / "plots" / "training_curves.png", overwrite=True)
        say(f"trained {energy.name}: {sampler.outer_iteration} outer iterations, "
            f"{sampler.energy_evaluations:,} energy evaluations; checkpoint {ckpt}, log {log_path}")
    return 0


def _with_target_network(config, target):
    """Add the target's ``particle_types`` to the e3nn network's options unless they were set."""
    from ..targets import network_overrides

    extra = {k: v for k, v in network_overrides(target, config.network).items() if k not in config.network_options}
    return config.replace(network_options={**config.network_options, **extra}) if extra else config


def _save_target(args, run: Path) -> None:
    from ..targets import save_run_target

    if getattr(args, "target", None) is not None:
        save_run_target(args.target, run)


def _rewrite_log(path: Path, history: list) -> None:
    """``metrics.jsonl`` holding exactly ``history`` (records as their dicts), written atomically."""
    from .._files import staged_files

    path.parent.mkdir(parents=True, exist_ok=True)
    with staged_files([path], overwrite=True) as (tmp,):
        tmp.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in history))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _relaunch_with_torchrun(nproc: int) -> int:
    """Re-run this command under torchrun with ``nproc`` processes on this node."""
    import subprocess

    cleaned, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        cleaned.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "idem_md", *cleaned]
    return subprocess.call(cmd)
