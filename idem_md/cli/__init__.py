"""Command-line interface: ``idem-md train | sample | md | evaluate | demo``.

``python -m idem_md ...`` is the same program, so ``torchrun -m idem_md train ...``
launches a distributed training run.

Modules, along a command's path: :mod:`.parser` (the arguments of each subcommand),
:mod:`.overrides` (``--config`` / ``--set``), :mod:`.train`, :mod:`.sample` (sample, md),
:mod:`.evaluate` (evaluate, demo) and :mod:`.guard` (errors as one line at the edge).
"""

from __future__ import annotations

from typing import Sequence

# Also importable from idem_md.cli, as before it became a package (examples, scripts, tests use them):
from ._common import RUN_CHECKPOINT, RUN_CONFIG, RUN_METRICS, SAMPLE_CORRECTIONS, CLIError  # noqa: F401
from .evaluate import cmd_demo, cmd_evaluate  # noqa: F401
from .guard import run_guarded
from .overrides import load_config_file, parse_set_values
from .parser import build_parser
from .sample import cmd_md, cmd_sample  # noqa: F401
from .train import cmd_train  # noqa: F401

__all__ = ["main", "build_parser", "parse_set_values", "load_config_file", "run_guarded"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``idem-md`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_guarded(f"idem-md {args.command}", args.func, args)
