"""Generate docs/api.md from the public docstrings (``__all__`` of each public module).

    python scripts/generate_api_docs.py            # write docs/api.md
    python scripts/generate_api_docs.py --check    # exit 1 when docs/api.md is stale
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

MODULES = [
    "idem_md",
    "idem_md.energies",
    "idem_md.energies.forcefield",
    "idem_md.energies.alanine",
    "idem_md.targets",
    "idem_md.bridges",
    "idem_md.bridges.ase",
    "idem_md.bridges.openmm",
    "idem_md.config",
    "idem_md.sampler",
    "idem_md.preflight",
    "idem_md.dem",
    "idem_md.dem.density",
    "idem_md.dem.diagnostics",
    "idem_md.nn",
    "idem_md.nn.egnn",
    "idem_md.nn.skip",
    "idem_md.correct",
    "idem_md.observables",
    "idem_md.likelihood",
    "idem_md.md",
    "idem_md.md.engine",
    "idem_md.samples",
    "idem_md.analysis",
    "idem_md.io",
    "idem_md.metrics",
    "idem_md.evaluation",
    "idem_md.plots",
    "idem_md.testing",
    "idem_md.checkpoint",
    "idem_md.distributed",
    "idem_md.units",
]
OUT = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__ or "(no docstring)")


def render() -> str:
    lines = ["# API reference", "", "Generated from the docstrings by `python scripts/generate_api_docs.py`; "
             "do not edit by hand.", ""]
    seen: set[int] = set()
    for modname in MODULES:
        mod = importlib.import_module(modname)
        lines += [f"## `{modname}`", "", _doc(mod).split("\n\n")[0], ""]
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if id(obj) in seen or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            seen.add(id(obj))
            kind = "class" if inspect.isclass(obj) else "function"
            lines += [f"### {kind} `{modname}.{name}{_signature(obj)}`", "", "```text", _doc(obj), "```", ""]
            if inspect.isclass(obj):
                for mname, member in sorted(vars(obj).items()):
                    if mname.startswith("_") or not (inspect.isfunction(member) or isinstance(member, (classmethod, property))):
                        continue
                    fn = member.__func__ if isinstance(member, classmethod) else member
                    sig = "" if isinstance(member, property) else _signature(fn)
                    doc = (inspect.getdoc(fn) or "").split("\n\n")[0]
                    lines += [f"- `{name}.{mname}{sig}`: {doc}".rstrip()]
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python scripts/generate_api_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
