"""What every ``idem-md`` subcommand shares: the run directory's file names, the user-error type,
messages on stderr, and the target that ``--system`` names. Standard library only (``--help`` stays fast)."""

from __future__ import annotations

import sys

__all__ = ["CLIError", "RUN_CHECKPOINT", "RUN_CONFIG", "RUN_METRICS", "SAMPLE_CORRECTIONS", "say", "target_of"]

RUN_CHECKPOINT = "checkpoint.pt"
RUN_CONFIG = "config.json"
RUN_METRICS = "metrics.jsonl"
SAMPLE_CORRECTIONS = ("none", "relax", "mala", "relax+mala", "smc")  # idem_md.correct.CORRECTIONS, without importing torch


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def say(msg: str) -> None:
    """``msg`` on stderr (stdout is kept for results such as the metrics table)."""
    print(msg, file=sys.stderr, flush=True)


def target_of(args):
    """The Energy that --system (with --topology, --temperature, --kT) names: :mod:`idem_md.targets`."""
    from ..targets import resolve_target

    return resolve_target(args.system, topology=getattr(args, "topology", None),
                          temperature=getattr(args, "temperature", None), kT=getattr(args, "kT", None))
