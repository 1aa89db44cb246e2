"""Which :class:`~idem_md.energies.base.Energy` a command-line ``--system`` means, and how a
run directory remembers it.

``--system`` is either a registered name (``lj13``, ``dw4``, ``aldp``, ...) or the path of a
serialised OpenMM System (``.xml``, from ``openmm.XmlSerializer.serialize``). A System is
translated to the batched :class:`~idem_md.energies.forcefield.ForceFieldEnergy` when all its
forces are standard ones (see :data:`~idem_md.energies.forcefield.SUPPORTED_FORCES`), and
wrapped as :class:`~idem_md.energies.openmm_bridge.OpenMMEnergy` (one Context call per
configuration) otherwise. Temperatures: ``temperature`` in kelvin for targets with physical
units (a System, ``aldp``), ``kT`` in the energy unit for reduced ones; the wrong one is refused
in one line.

A training run stores :data:`RUN_SYSTEM_FILE` (the :class:`TargetSpec` as JSON) and, for a
System, copies of the System XML and the topology PDB, so ``idem-md sample RUN`` rebuilds the
same target without ``--system``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .energies.base import Energy

__all__ = ["TargetSpec", "Target", "resolve_target", "save_run_target", "load_run_target", "RUN_SYSTEM_FILE",
           "network_overrides", "write_topology_beside"]

#: The target of a run directory, as JSON.
RUN_SYSTEM_FILE = "system.json"
_RUN_SYSTEM_XML = "system.xml"
_RUN_TOPOLOGY_PDB = "topology.pdb"
_SYSTEM_SUFFIXES = (".xml",)


@dataclass(frozen=True)
class TargetSpec:
    """What ``--system`` named, plain data.

    Attributes
    ----------
    system : str
        A registered name, or the path of a serialised OpenMM System (``.xml``).
    topology : str or None
        Path of a PDB naming the atoms (elements, residues) for trajectories.
    temperature : float or None
        Kelvin, for targets with physical units.
    kT : float or None
        Thermal energy in the energy's unit, for reduced targets.
    name : str or None
        The energy's name for a System file (default: the file's stem); kept by a run
        directory, whose copy of the file has another stem.
    """

    system: str
    topology: str | None = None
    temperature: float | None = None
    kT: float | None = None
    name: str | None = None

    @property
    def is_file(self) -> bool:
        """True when :attr:`system` is a serialised System rather than a registered name."""
        return self.system.lower().endswith(_SYSTEM_SUFFIXES)


@dataclass
class Target:
    """A resolved target: the energy, what it came from, and its topology (or None)."""

    energy: Energy
    spec: TargetSpec
    topology: Any = None  # openmm.app.Topology


def resolve_target(system: str, *, topology: str | None = None, temperature: float | None = None,
                   kT: float | None = None, name: str | None = None) -> Target:
    """Build the Energy that ``--system`` (with ``--topology``, ``--temperature``, ``--kT``) means.

    Parameters
    ----------
    system : str
        Registered name or path of a serialised OpenMM System (``*.xml``).
    topology : str, optional
        PDB with the System's atoms in order (required to write real atom names; optional).
    temperature : float, optional
        Kelvin; required for a System file, accepted by registered targets with physical units.
    kT : float, optional
        Reduced thermal energy; for reduced registered targets only.
    name : str, optional
        Name of the energy built from a System file (default: the file's stem).

    Returns
    -------
    Target

    Examples
    --------
    >>> resolve_target("lj13", kT=0.5).energy.kT
    0.5
    """
    if not isinstance(system, str) or not system:
        raise TypeError(f"--system must be a system name or a path to a serialised OpenMM System (.xml), got {system!r}")
    if temperature is not None and kT is not None:
        raise ValueError("give either --temperature (kelvin, physical units) or --kT (reduced units), not both")
    spec = TargetSpec(system, topology, None if temperature is None else float(temperature),
                      None if kT is None else float(kT), name)
    if spec.is_file:
        energy = _system_file_energy(spec, _pdb_positions(topology) if topology is not None else None)
    else:
        if topology is not None:
            raise ValueError(f"--topology is for a serialised OpenMM System (.xml); {system!r} is a registered name")
        energy = _registered_energy(spec)
    top = _load_topology(topology, energy) if topology is not None else getattr(energy, "topology", None)
    return Target(energy, spec, top)


def _registered_energy(spec: TargetSpec) -> Energy:
    from .energies import get_energy

    if spec.temperature is not None:
        kwargs, flag, other = {"temperature": spec.temperature}, "--temperature", "--kT (reduced units)"
    elif spec.kT is not None:
        kwargs, flag, other = {"kT": spec.kT}, "--kT", "--temperature (kelvin)"
    else:
        return get_energy(spec.system)
    try:
        return get_energy(spec.system, **kwargs)
    except TypeError as exc:
        if next(iter(kwargs)) in str(exc):
            raise ValueError(f"{flag} does not apply to {spec.system!r}; give {other} instead") from None
        raise


def _pdb_positions(path: str):
    """The PDB's positions (an OpenMM Quantity, nm) as the MD start of the System; None if unreadable
    (then :func:`_load_topology` reports the file)."""
    from openmm import app

    try:
        return app.PDBFile(str(path)).getPositions()
    except Exception:
        return None


def _system_file_energy(spec: TargetSpec, positions=None) -> Energy:
    import openmm

    from .energies.forcefield import ForceFieldEnergy, check_supported
    from .energies.openmm_bridge import OpenMMEnergy

    path = Path(spec.system)
    if not path.is_file():
        raise FileNotFoundError(f"--system {path}: no such file (expected a serialised OpenMM System, .xml)")
    if spec.kT is not None:
        raise ValueError("--kT is for reduced-unit systems; an OpenMM System has physical units: give --temperature "
                         "in kelvin")
    if spec.temperature is None:
        raise ValueError(f"--temperature (kelvin) is required with --system {path}")
    try:
        system = openmm.XmlSerializer.deserialize(path.read_text())
    except Exception as exc:  # OpenMM raises a bare Exception for malformed XML
        raise ValueError(f"--system {path} is not a serialised OpenMM System: {str(exc)[:200]}") from None
    if not isinstance(system, openmm.System):
        raise ValueError(f"--system {path} holds a {type(system).__name__}, expected a serialised openmm.System")
    name = spec.name or path.stem
    try:
        check_supported(system)
    except ValueError:  # non-standard forces: one Context call per configuration (it refuses what it cannot do)
        return OpenMMEnergy(system, temperature=spec.temperature, name=name, positions=_if_n(positions, system))
    return ForceFieldEnergy(system, temperature=spec.temperature, name=name, positions=_if_n(positions, system))


def _if_n(positions, system):
    """``positions`` when they have one row per particle of ``system`` (else None: the count mismatch is
    reported by :func:`_load_topology` with the file's name)."""
    return positions if positions is not None and len(positions) == system.getNumParticles() else None


def _load_topology(path: str, energy: Energy):
    from openmm import app

    if not Path(path).is_file():
        raise FileNotFoundError(f"--topology {path}: no such file (expected a PDB)")
    try:
        top = app.PDBFile(str(path)).topology
    except Exception as exc:
        raise ValueError(f"--topology {path} is not a readable PDB: {str(exc)[:200]}") from None
    if top.getNumAtoms() != energy.n_particles:
        raise ValueError(f"--topology {path} has {top.getNumAtoms()} atoms, the system has {energy.n_particles}")
    return top


def network_overrides(target: Target, network: str) -> dict[str, Any]:
    """``network_options`` the target asks for: ``particle_types`` from the energy's
    ``particle_types()`` hook for the e3nn network (empty otherwise)."""
    hook = getattr(target.energy, "particle_types", None)
    if network != "e3nn" or not callable(hook):
        return {}
    return {"particle_types": [int(t) for t in hook()]}


# --------------------------------------------------------------- run directories
def save_run_target(target: Target, run: Path) -> None:
    """Write :data:`RUN_SYSTEM_FILE` into ``run``, with copies of a System file and topology."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    spec = target.spec
    if spec.is_file:
        shutil.copyfile(spec.system, run / _RUN_SYSTEM_XML)
        spec = replace(spec, system=_RUN_SYSTEM_XML, name=target.energy.name)
    if spec.topology is not None:
        shutil.copyfile(spec.topology, run / _RUN_TOPOLOGY_PDB)
        spec = replace(spec, topology=_RUN_TOPOLOGY_PDB)
    (run / RUN_SYSTEM_FILE).write_text(json.dumps(asdict(spec), indent=2))


def load_run_target(run: Path) -> Target | None:
    """The target a run directory was trained on, or None for runs without :data:`RUN_SYSTEM_FILE`
    (older runs of registered systems: the checkpoint's name is enough)."""
    path = Path(run) / RUN_SYSTEM_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        spec = TargetSpec(**data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"{path} is not a run's system description: {exc}") from None
    in_run = lambda p: None if p is None else str(Path(run) / p)  # noqa: E731
    system = in_run(spec.system) if spec.is_file else spec.system
    return resolve_target(system, topology=in_run(spec.topology), temperature=spec.temperature, kT=spec.kT,
                          name=spec.name)


def write_topology_beside(written: list[Path], target: Target | None) -> None:
    """Replace the placeholder ``.pdb`` that a ``.dcd`` save writes (one argon per particle) by
    the target's own topology (atom names, elements, residues, bonds), when it has one."""
    if target is None or target.topology is None:
        return
    import mdtraj as md

    top = md.Topology.from_openmm(target.topology)
    for pdb in (p for p in written if Path(p).suffix == ".pdb"):
        placeholder = md.load_pdb(str(pdb))
        md.Trajectory(placeholder.xyz[:1], top).save_pdb(str(pdb))
