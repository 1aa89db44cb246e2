"""Command-line interface: ``idem-md train | sample | md | evaluate | demo``.

``python -m idem_md ...`` is the same program, so ``torchrun -m idem_md train ...``
launches a distributed training run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main", "build_parser", "parse_set_values", "load_config_file", "run_guarded"]

RUN_CHECKPOINT = "checkpoint.pt"
RUN_CONFIG = "config.json"
RUN_METRICS = "metrics.jsonl"
SAMPLE_CORRECTIONS = ("none", "relax", "mala", "relax+mala", "smc")  # idem_md.correct.CORRECTIONS, without importing torch


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


# ------------------------------------------------------------------ config parsing
def _parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"1e-3"`` -> 0.001, ``"true"`` -> True, ``"none"`` -> None, JSON objects, else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_set_values(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``--set key=value`` items; ``network_options.key=value`` sets one network option.

    >>> parse_set_values(["batch_size=64", "lr=1e-4", "network_options.n_layers=2"])
    {'batch_size': 64, 'lr': 0.0001, 'network_options': {'n_layers': 2}}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--set expects key=value, got {item!r}")
        head, dot, sub = key.strip().partition(".")
        if dot:
            if head != "network_options" or not sub:
                raise CLIError(f"--set: only network_options.<name> may be dotted, got {key!r}")
            out.setdefault("network_options", {})[sub] = _parse_value(value)
        else:
            out[head] = _parse_value(value)
    return out


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read config overrides from a TOML file (top-level keys are config fields;
    an optional ``[network_options]`` table)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config file not found: {path}")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CLIError(f"--config {path} is not valid TOML: {exc}") from None
    return data


# ------------------------------------------------------------------ subcommands
def _training_overrides(args) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.config:
        overrides.update(load_config_file(args.config))
    sets = parse_set_values(args.set or [])
    if "network_options" in sets and "network_options" in overrides:
        sets["network_options"] = {**overrides["network_options"], **sets["network_options"]}
    overrides.update(sets)
    if args.outer_iterations is not None:
        overrides["outer_iterations"] = args.outer_iterations
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.energy_budget is not None:
        if not (args.energy_budget >= 1 and float(args.energy_budget).is_integer()):
            raise CLIError(f"--energy-budget must be a positive whole number of evaluations, got {args.energy_budget!r}")
        overrides["energy_budget"] = int(args.energy_budget)
    return overrides


def cmd_train(args) -> int:
    from .config import preset
    from .distributed import DistContext, init_distributed_from_env
    from .energies import get_energy

    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _relaunch_with_torchrun(args.nproc)
    distributed = init_distributed_from_env()
    device = args.device
    if distributed and device in (None, "cuda") and _cuda_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    target = _target(args)
    energy = target.energy
    try:
        config = preset(energy.name, particle_system=energy.is_particle_system, cpu=getattr(args, "cpu_preset", False),
                        **_training_overrides(args))
    except ValueError as exc:
        if getattr(args, "cpu_preset", False) and "CPU preset" in str(exc):
            raise CLIError(f"--cpu-preset: {exc}") from None
        raise
    config = _with_target_network(config, target)
    args.target = target
    run = Path(args.out)
    if DistContext.detect().is_main:
        from .runlock import RunLock

        with RunLock(run):
            return _train(args, energy, config, run, device)
    return _train(args, energy, config, run, device)


def _train(args, energy, config, run: Path, device) -> int:
    from .distributed import DistContext
    from .sampler import IDEMSampler

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
        _say(f"resuming {run} at outer iteration {sampler.outer_iteration}/{config.outer_iterations}")
    else:
        sampler = IDEMSampler(energy, config, device=device)
        sampler.preflight()  # target and memory checks before anything is written into the run
        if DistContext.detect().is_main:
            run.mkdir(parents=True, exist_ok=True)
            (run / RUN_CONFIG).write_text(json.dumps({"system": energy.name, "config": config.to_dict()}, indent=2))
            _save_target(args, run)
    log_path = run / RUN_METRICS
    if sampler.dist.is_main:  # the log holds exactly the checkpoint's history (no duplicates after a kill)
        _rewrite_log(log_path, sampler.history)

    def log_record(s, record):
        if s.dist.is_main:
            with log_path.open("a") as fh:
                fh.write(json.dumps({**record, "pid": os.getpid()}) + "\n")

    try:
        sampler.fit(checkpoint_path=ckpt, callbacks=[log_record], progress=not args.quiet)
    except (KeyboardInterrupt, SystemExit) as exc:  # SIGINT / SIGTERM: fit() saved the checkpoint first
        what = "terminated (SIGTERM)" if isinstance(exc, SystemExit) else "interrupted"
        _say(f"{what}: checkpoint saved at {ckpt} (outer iteration {sampler.outer_iteration}, "
             f"inner step {sampler.inner_step}); run the same command to resume")
        return 143 if isinstance(exc, SystemExit) else 130
    if sampler.dist.is_main:
        from .plots import save_figure, training_curves

        if sampler.history:  # no curves to draw after 0 outer iterations
            (run / "plots").mkdir(parents=True, exist_ok=True)
            save_figure(training_curves(sampler.history), run / "plots" / "training_curves.png", overwrite=True)
        _say(f"trained {energy.name}: {sampler.outer_iteration} outer iterations, "
             f"{sampler.energy_evaluations:,} energy evaluations; checkpoint {ckpt}, log {log_path}")
    return 0


def _target(args):
    """The Energy that --system (with --topology, --temperature, --kT) names: :mod:`idem_md.targets`."""
    from .targets import resolve_target

    return resolve_target(args.system, topology=getattr(args, "topology", None),
                          temperature=getattr(args, "temperature", None), kT=getattr(args, "kT", None))


def _with_target_network(config, target):
    """Add the target's ``particle_types`` to the e3nn network's options unless they were set."""
    from .targets import network_overrides

    extra = {k: v for k, v in network_overrides(target, config.network).items() if k not in config.network_options}
    return config.replace(network_options={**config.network_options, **extra}) if extra else config


def _save_target(args, run: Path) -> None:
    from .targets import save_run_target

    if getattr(args, "target", None) is not None:
        save_run_target(args.target, run)


def _rewrite_log(path: Path, history: list[dict]) -> None:
    from ._files import staged_files

    path.parent.mkdir(parents=True, exist_ok=True)
    with staged_files([path], overwrite=True) as (tmp,):
        tmp.write_text("".join(json.dumps(r) + "\n" for r in history))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _relaunch_with_torchrun(nproc: int) -> int:
    """Re-run this command under torchrun with ``nproc`` processes on this node."""
    import subprocess

    argv = [a for a in sys.argv[1:]]
    cleaned, skip = [], False
    for a in argv:
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


def cmd_sample(args) -> int:
    from .correct import CorrectionOptions, corrected_samples
    from .io import check_output_path
    from .sampler import IDEMSampler

    run = Path(args.run_dir)
    ckpt = run / RUN_CHECKPOINT
    if not run.is_dir():
        raise FileNotFoundError(f"run directory not found: {run}")
    if not ckpt.is_file():
        raise FileNotFoundError(f"no checkpoint in {run} (expected {ckpt}); train first with idem-md train")
    check_output_path(args.out, args.overwrite)
    options = CorrectionOptions(method=args.correct, mala_steps=args.mala_steps, relax_steps=args.relax_steps,
                                cess_target=args.cess_target, weighted=args.weighted, seed=args.seed,
                                anneal=args.anneal, oversample=args.oversample)
    from .targets import load_run_target, write_topology_beside

    target = load_run_target(run)  # None: an older run of a registered system (its name is in the checkpoint)
    sampler = IDEMSampler.load(ckpt, energy=None if target is None else target.energy, device=args.device)
    if args.correct == "smc" and sampler.density is None:
        _say(f"{run} has no density model yet: fitting one on {args.density_samples} samples "
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
        _say(f"correction {args.correct}: {info['n_energy_evaluations']:,} energy evaluations"
             + (f", {', '.join(figures)}" if figures else ""))
    _say(f"wrote {len(samples)} samples: {', '.join(str(p) for p in written)}")
    return 0


def cmd_md(args) -> int:
    from .io import check_output_path
    from .md import MDConfig, run_md
    from .targets import write_topology_beside

    target = _target(args)
    energy = target.energy
    check_output_path(args.out, args.overwrite)
    config = MDConfig(seed=args.seed, timestep=args.timestep, friction=args.friction, engine=args.engine,
                      n_chains=args.chains)
    run = run_md(energy, args.n, config, progress=not args.quiet)
    written = run.to_samples().save(args.out, overwrite=args.overwrite)
    write_topology_beside(written, target)
    _say(f"MD: {run.n_samples} samples, thinning {run.thinning} steps, {run.n_energy_evaluations:,} energy "
         f"evaluations, {run.wall_time:.1f} s; wrote {', '.join(str(p) for p in written)}")
    return 0


def _check_writable(path, overwrite: bool) -> None:
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")


def cmd_evaluate(args) -> int:
    from .evaluation import evaluate
    from .io import Samples

    energy = _target(args).energy
    samples = Samples.load(args.file, n_particles=energy.n_particles, spatial_dim=energy.spatial_dim)
    reference = None
    if args.reference:
        reference = Samples.load(args.reference, n_particles=energy.n_particles, spatial_dim=energy.spatial_dim)
    elif energy.name == "gmm40":
        reference = energy.sample(max(len(samples), 1000))
    sampler = None
    if args.run:
        from .sampler import IDEMSampler

        ckpt = Path(args.run) / RUN_CHECKPOINT
        if not ckpt.is_file():
            raise FileNotFoundError(f"--run {args.run}: no checkpoint there (expected {ckpt})")
        sampler = IDEMSampler.load(ckpt, energy=energy)
        if sampler.density is None:
            _say(f"{args.run} has no density model: NLL/ESS come from the score's probability-flow ODE, a "
                 "diagnostic (idem-md sample --correct smc fits and saves a density model)")
    report = evaluate(samples, energy, reference, sampler=sampler, n_batches=args.batches, batch_size=args.batch_size,
                      likelihood_samples=args.likelihood_samples, trust_stored_energies=args.stored_energies)
    print(report.table())
    if args.json:
        _check_writable(args.json, args.overwrite)
        Path(args.json).write_text(report.to_json())
        _say(f"report written to {args.json}")
    if args.plots:
        _write_evaluation_plots(Path(args.plots), energy, samples, reference, args.overwrite)
    return 0


def _write_evaluation_plots(outdir: Path, energy, samples, reference, overwrite: bool) -> None:
    from .plots import distance_histogram, energy_histogram, gmm_scatter, save_figure

    data = {"samples": samples}
    if reference is not None:
        data["reference"] = reference
    outdir.mkdir(parents=True, exist_ok=True)
    save_figure(energy_histogram(_with_energies(data, energy)), outdir / "energy_histogram.png", overwrite=overwrite)
    if energy.is_particle_system:
        save_figure(distance_histogram(data, energy.n_particles, energy.spatial_dim),
                    outdir / "distance_histogram.png", overwrite=overwrite)
    elif hasattr(energy, "means"):
        save_figure(gmm_scatter(samples, energy.means), outdir / "gmm_scatter.png", overwrite=overwrite)
    _say(f"plots written to {outdir}")


def _with_energies(data: dict, energy) -> dict:
    """Energies of every dataset (computed when a file held none)."""
    import torch

    from .io import Samples

    out = {}
    for label, item in data.items():
        if isinstance(item, Samples):
            e = item.energies
            if e is None:
                e = energy.energy(item.positions.to(torch.float64))
            out[label] = e
        else:
            out[label] = energy.energy(torch.as_tensor(item).to(torch.float64).reshape(len(item), -1))
    return out


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), fast=args.fast, overwrite=args.overwrite, progress=not args.quiet)
    return 0


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ parser
_SYSTEM_HELP = ("gmm40, dw4, lj13, lj55 (or ljN / dwN), aldp (alanine dipeptide), or a serialised OpenMM System "
                "(.xml, non-periodic, no constraints)")


def _add_target_arguments(p: argparse.ArgumentParser) -> None:
    """--topology, --temperature, --kT: what the target needs besides --system (idem_md.targets)."""
    p.add_argument("--topology", metavar="FILE.pdb", help="with --system FILE.xml: a PDB naming its atoms (elements, "
                   "residues) for .pdb/.dcd trajectories")
    p.add_argument("--temperature", type=float, metavar="K", help="kelvin, for targets with physical units "
                   "(required with --system FILE.xml; aldp: default 300)")
    p.add_argument("--kT", type=float, metavar="KT", help="thermal energy in reduced units, for reduced targets "
                   "(lj13, dw4, ...; default their own, 1)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="idem-md", description="Iterated Denoising Energy Matching (iDEM) samplers "
                                "for Boltzmann densities, with OpenMM MD baselines.")
    p.add_argument("--version", action="version", version=f"idem_md {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser("train", help="train an iDEM sampler (resumes when RUN_DIR holds a checkpoint)",
                       description="Train an iDEM sampler. Running the same command again after an interruption "
                       "resumes from RUN_DIR/checkpoint.pt. Under torchrun (or with --nproc N) training is data "
                       "parallel over the processes.")
    t.add_argument("--system", required=True, help=_SYSTEM_HELP)
    _add_target_arguments(t)
    t.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (config, checkpoint, metrics log, plots)")
    t.add_argument("--config", metavar="FILE.toml", help="TOML file of config overrides")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one config field (e.g. --set batch_size=128 --set network_options.n_layers=2); "
                   "repeatable")
    t.add_argument("--outer-iterations", type=int, metavar="N", help="total outer iterations to reach")
    t.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    t.add_argument("--seed", type=int, metavar="S")
    t.add_argument("--energy-budget", type=float, metavar="N", help="stop training once the DEM estimator has spent "
                   "N energy evaluations (e.g. 2e8); the run's other evaluations are counted beside it")
    t.add_argument("--cpu-preset", action="store_true", help="shrunken settings measured for a CPU (lj13, lj55: "
                   "smaller batch, network and refill; idem_md.config.CPU_PRESETS), then --config/--set on top")
    t.add_argument("--nproc", type=int, metavar="N", help="launch N local processes with torchrun (gloo on CPU)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="draw samples from a trained run", description="Draw samples from a trained "
                       "run by integrating the reverse SDE, optionally corrected towards the exact Boltzmann "
                       "distribution (--correct); weights, log Z and ESS go into the file's metadata. The suffix "
                       "of --out picks the format: .xyz (extended XYZ, energies included), .dcd (a .pdb topology and a .json sidecar are written beside it), .npz.")
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("-n", type=int, required=True, help="number of samples")
    s.add_argument("--out", required=True, metavar="FILE", help="output file (.xyz, .dcd or .npz)")
    s.add_argument("--steps", type=int, help="reverse-SDE steps (default: the run's sde_steps)")
    s.add_argument("--correct", choices=SAMPLE_CORRECTIONS, default="none",
                   help="none: raw samples; relax: remove near-overlaps by minimisation + Langevin (not exact); "
                   "mala: MALA chains from the raw samples; smc: annealed SMC from the run's density model to the "
                   "target, with log Z (fits and saves the density model first when the run has none)")
    s.add_argument("--mala-steps", type=int, default=100, metavar="K", help="MALA steps (mala: per chain; smc: at the "
                   "target, and per tempering stage with --anneal); default 100 (on DW-4, 20 steps leave the energy "
                   "W2 above an exact sampler's, 100 reach it: docs/results.md)")
    s.add_argument("--relax-steps", type=int, default=100, metavar="K", help="Langevin steps of relax (default 100)")
    s.add_argument("--anneal", action="store_true", help="smc: temper from q to the target with MALA moves at every "
                   "stage (needs grad log q of the density model at every move: slow on a CPU); default: one "
                   "importance stage, resampling, then the MALA steps at the target")
    s.add_argument("--cess-target", type=float, default=0.9, help="smc --anneal: conditional ESS per stage (default 0.9)")
    s.add_argument("--weighted", action="store_true", help="smc: keep the weighted particles (no final resampling)")
    s.add_argument("--oversample", type=int, default=4, metavar="K", help="smc: draw K * N proposals and resample N "
                   "of them (fewer duplicates; default 4)")
    s.add_argument("--density-samples", type=int, default=5000, metavar="N",
                   help="smc on a run without a density model: samples to fit it on (default 5000)")
    s.add_argument("--density-steps", type=int, metavar="N", help="flow-matching steps of that fit")
    s.add_argument("--seed", type=int, default=0, help="seed of the correction (default 0)")
    s.add_argument("--device", choices=["cpu", "cuda"])
    s.add_argument("--overwrite", action="store_true", help="replace existing files")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_sample)

    m = sub.add_parser("md", help="run the OpenMM Langevin MD baseline", description="Run OpenMM Langevin dynamics "
                       "at the target's kT, thinned by the measured energy autocorrelation time, and write the samples "
                       "(.xyz, .dcd + .pdb, or .npz).")
    m.add_argument("--system", required=True, help=_SYSTEM_HELP)
    _add_target_arguments(m)
    m.add_argument("-n", type=int, required=True, help="number of samples")
    m.add_argument("--out", required=True, metavar="FILE")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--timestep", type=float, default=0.005, help="reduced time units (ps); default 0.005 (a "
                   "molecule with unconstrained hydrogens needs about 0.001 ps)")
    m.add_argument("--friction", type=float, default=1.0, help="Langevin friction, 1/ps (reduced: 1/time); default 1")
    m.add_argument("--engine", choices=["auto", "openmm", "ase", "torch"], default="auto",
                   help="MD engine; auto: OpenMM where the target has a System, ASE for ASE targets, else torch BAOAB")
    m.add_argument("--chains", type=int, default=1,
                   help="independent chains, batched by the torch engine (auto picks it for > 1); default 1")
    m.add_argument("--overwrite", action="store_true")
    m.add_argument("--quiet", action="store_true")
    m.set_defaults(func=cmd_md)

    e = sub.add_parser("evaluate", help="metrics of a sample file", description="Print the metrics table of a "
                       "sample file (against --reference when given; GMM-40 uses exact samples) and optionally "
                       "write the JSON report and plots.")
    e.add_argument("file", metavar="FILE", help=".xyz, .dcd or .npz")
    e.add_argument("--system", required=True, help=_SYSTEM_HELP)
    _add_target_arguments(e)
    e.add_argument("--reference", metavar="FILE", help="reference samples (.xyz, .dcd, .npz)")
    e.add_argument("--run", metavar="RUN_DIR", help="a trained run: adds NLL of the reference and importance ESS "
                   "from its density model (or, without one, the score's probability-flow ODE as a diagnostic)")
    e.add_argument("--likelihood-samples", type=int, default=1000, metavar="N",
                   help="with --run: reference points for the NLL and model samples for the ESS (default 1000)")
    e.add_argument("--stored-energies", action="store_true", help="use the energies stored in the files instead of "
                   "recomputing them (default: recompute, and warn where stored ones disagree)")
    e.add_argument("--json", metavar="OUT", help="write the report as JSON")
    e.add_argument("--plots", metavar="DIR", help="write energy / distance histograms as PNG")
    e.add_argument("--batches", type=int, default=5, help="independent batches per metric (default 5)")
    e.add_argument("--batch-size", type=int, default=1000)
    e.add_argument("--overwrite", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("demo", help="train, sample, run MD and compare on DW-4 (a few minutes on 2 CPU cores)",
                       description="The main job on an embedded default: trains a small iDEM sampler on DW-4, "
                       "writes a trajectory, runs a short OpenMM MD baseline, evaluates both against the bundled "
                       "MD reference and writes an energy histogram PNG.")
    d.add_argument("--out", default="idem_demo", metavar="DIR", help="output directory (default ./idem_demo)")
    d.add_argument("--fast", action="store_true", help="a seconds-long smoke run (for tests)")
    d.add_argument("--overwrite", action="store_true")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_guarded(f"idem-md {args.command}", args.func, args)


def run_guarded(prog: str, func, *args) -> int:
    """``func(*args)`` at a command-line edge: user errors, out-of-memory and Ctrl-C become one line on
    stderr (``PROG: error: ...``) and exit code 2 (130 for Ctrl-C), never a traceback. Returns the exit
    code (``func``'s own when it returns an int, else 0). The examples' ``__main__`` blocks use it too."""
    from .checkpoint import CheckpointError
    from .energies.base import EnergyEvaluationError
    from .runlock import RunLockedError

    try:
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, *rest, **kw: print(f"{prog}: warning: {_one_line(message)}",
                                                                      file=sys.stderr, flush=True)
            result = func(*args)
        return result if isinstance(result, int) and not isinstance(result, bool) else 0
    except (CLIError, ValueError, TypeError, FileNotFoundError, FileExistsError, CheckpointError, RunLockedError,
            NotImplementedError, EnergyEvaluationError, FloatingPointError, IsADirectoryError,
            PermissionError, MemoryError) as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # the allocator's: torch.OutOfMemoryError, "DefaultCPUAllocator: can't allocate"
        if not _is_out_of_memory(exc):
            raise
        print(f"{prog}: error: out of memory ({_one_line(exc)[:200]}); reduce batch_size, num_mc_samples, "
              "estimator_chunk_size, sample_batch_size or -n", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc)
    return (type(exc).__name__ == "OutOfMemoryError" or "DefaultCPUAllocator" in text
            or "out of memory" in text.lower())


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
