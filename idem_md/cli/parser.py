"""The ``idem-md`` argument parser: one function per subcommand's arguments."""

from __future__ import annotations

import argparse

from ..dem.density_config import default_density_config
from ._common import SAMPLE_CORRECTIONS
from .evaluate import cmd_demo, cmd_evaluate
from .sample import cmd_md, cmd_sample
from .train import cmd_train

__all__ = ["build_parser"]

_SYSTEM_HELP = ("gmm40, dw4, lj13, lj55 (or ljN / dwN), aldp (alanine dipeptide), or a serialised OpenMM System "
                "(.xml, non-periodic, no constraints)")


def _add_target_arguments(p: argparse.ArgumentParser) -> None:
    """--system, --topology, --temperature, --kT: the target (idem_md.targets)."""
    p.add_argument("--system", required=True, help=_SYSTEM_HELP)
    p.add_argument("--topology", metavar="FILE.pdb", help="with --system FILE.xml: a PDB naming its atoms (elements, "
                   "residues) for .pdb/.dcd trajectories")
    p.add_argument("--temperature", type=float, metavar="K", help="kelvin, for targets with physical units "
                   "(required with --system FILE.xml; aldp: default 300)")
    p.add_argument("--kT", type=float, metavar="KT", help="thermal energy in reduced units, for reduced targets "
                   "(lj13, dw4, ...; default their own, 1)")


def _add_train(sub) -> None:
    t = sub.add_parser("train", help="train an iDEM sampler (resumes when RUN_DIR holds a checkpoint)",
                       description="Train an iDEM sampler. Running the same command again after an interruption "
                       "resumes from RUN_DIR/checkpoint.pt. Under torchrun (or with --nproc N) training is data "
                       "parallel over the processes.")
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
    t.add_argument("--cpu-preset", action="store_true", help="shrunken settings measured for a CPU (lj13, lj55, dw4: "
                   "smaller batch and refill, for LJ a smaller network; idem_md.config.CPU_PRESETS), then "
                   "--config/--set on top")
    t.add_argument("--nproc", type=int, metavar="N", help="launch N local processes with torchrun (gloo on CPU)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)


def _add_sample(sub) -> None:
    s = sub.add_parser("sample", help="draw samples from a trained run", description="Draw samples from a trained "
                       "run by integrating the reverse SDE, optionally corrected towards the exact Boltzmann "
                       "distribution (--correct); weights, log Z and ESS go into the file's metadata. The suffix "
                       "of --out picks the format: .xyz (extended XYZ, energies included), .dcd (a .pdb topology and a .json sidecar are written beside it), .npz.")
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("-n", type=int, required=True, help="number of samples")
    s.add_argument("--out", required=True, metavar="FILE", help="output file (.xyz, .dcd or .npz)")
    s.add_argument("--steps", type=int, help="reverse-SDE steps (default: IDEMConfig.sampling_integrator: Heun on the "
                   "edm grid with half the refill's sde_steps, at most 100; older runs: their refill's)")
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
    s.add_argument("--density-steps", type=int, metavar="N",
                   help=f"flow-matching steps of that fit (default: {default_density_config(True).steps} for "
                   f"particle systems, {default_density_config(False).steps} otherwise)")
    s.add_argument("--seed", type=int, default=0, help="seed of the correction (default 0)")
    s.add_argument("--device", choices=["cpu", "cuda"])
    s.add_argument("--overwrite", action="store_true", help="replace existing files")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_sample)


def _add_md(sub) -> None:
    m = sub.add_parser("md", help="run the OpenMM Langevin MD baseline", description="Run OpenMM Langevin dynamics "
                       "at the target's kT, thinned by the measured energy autocorrelation time, and write the samples "
                       "(.xyz, .dcd + .pdb, or .npz).")
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


def _add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="metrics of a sample file", description="Print the metrics table of a "
                       "sample file (against --reference when given; GMM-40 uses exact samples) and optionally "
                       "write the JSON report and plots.")
    e.add_argument("file", metavar="FILE", help=".xyz, .dcd or .npz")
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


def _add_demo(sub) -> None:
    d = sub.add_parser("demo", help="train, sample, run MD and compare on DW-4 (a few minutes on 2 CPU cores)",
                       description="The main job on an embedded default: trains a small iDEM sampler on DW-4, "
                       "writes a trajectory, runs a short OpenMM MD baseline, evaluates both against the bundled "
                       "MD reference and writes an energy histogram PNG.")
    d.add_argument("--out", default="idem_demo", metavar="DIR", help="output directory (default ./idem_demo)")
    d.add_argument("--fast", action="store_true", help="a seconds-long smoke run (for tests)")
    d.add_argument("--overwrite", action="store_true")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``idem-md`` parser: subcommands train, sample, md, evaluate, demo (each sets ``args.func``)."""
    from .. import __version__

    p = argparse.ArgumentParser(prog="idem-md", description="Iterated Denoising Energy Matching (iDEM) samplers "
                                "for Boltzmann densities, with OpenMM MD baselines.")
    p.add_argument("--version", action="version", version=f"idem_md {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_train, _add_sample, _add_md, _add_evaluate, _add_demo):
        add(sub)
    return p
