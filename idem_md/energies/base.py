"""The :class:`Energy` base class: batched Boltzmann targets in reduced units.

Every target that idem_md samples is an :class:`Energy`. Subclasses implement a
single method, :meth:`Energy._energy`, on a validated batch of shape
``(B, n_particles, spatial_dim)``; they may also override
:meth:`Energy._energy_and_forces` with analytic forces or an engine's own
forces, so that the sampler never differentiates through an energy.

What else a target can do is said by hooks it may override, never by its class:
:attr:`Energy.translation_invariant` (sampled centre-of-mass free),
:meth:`Energy.initial_configuration` (MD start), :meth:`Energy.openmm_pair_potential`
(an OpenMM custom-force form, which gives :meth:`Energy.to_openmm_system`) and
:attr:`Energy.default_md_engine`. This module imports no bridge: the ASE and
OpenMM bridges (:mod:`idem_md.bridges`) are imported inside the methods that need them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .placement import random_sequential_placement

if TYPE_CHECKING:  # pragma: no cover
    from .pair import PairPotential

__all__ = ["Energy", "EnergyEvaluationError"]


class EnergyEvaluationError(RuntimeError):
    """An external engine failed on a configuration (the index is in the message)."""


class Energy(torch.nn.Module):
    r"""Base class for a batched energy :math:`E(x)` with Boltzmann density
    :math:`p(x) \propto \exp(-E(x)/kT)`.

    Units: coordinates and energies are in the energy's own units, stated by
    :attr:`length_unit` and :attr:`energy_unit` (``"reduced"`` for the built-in
    benchmarks: lengths in r_m or sigma, energies in epsilon). ``kT`` is in the
    same energy unit; :meth:`log_prob` is dimensionless.

    Parameters
    ----------
    n_particles : int
        Number of particles (1 for a plain vector target such as GMM-40).
    spatial_dim : int
        Coordinates per particle (2 or 3).
    kT : float
        Thermal energy, in the energy's unit, > 0.
    name : str
        Registry name or a free label; stored in checkpoints to recognise the target.

    Attributes
    ----------
    n_evaluations : int
        Configurations evaluated so far (one per configuration, by
        :meth:`energy` and :meth:`energy_and_forces` alike).

    Examples
    --------
    >>> import torch
    >>> from idem_md import get_energy
    >>> lj = get_energy("lj13")
    >>> x = torch.randn(4, 13, 3)
    >>> lj.energy(x).shape
    torch.Size([4])
    >>> e, f = lj.energy_and_forces(x.reshape(4, 39))
    >>> f.shape
    torch.Size([4, 39])
    """

    length_unit: str = "reduced"
    energy_unit: str = "reduced"
    #: True when ``E(x + c) = E(x)`` for a common shift ``c`` of every particle: the target
    #: is then sampled on the centre-of-mass-free subspace and MD output is centred.
    #: Default False; pair potentials set it True. (Not "more than one particle": a
    #: cluster in an external field has many particles and is not invariant.)
    translation_invariant: bool = False
    #: kJ/mol of one energy unit when this target runs in OpenMM; 1 for reduced units
    #: (one reduced energy = 1 kJ/mol, one reduced length = 1 nm, 1 amu; docs/units.md).
    openmm_energy_unit_kj_per_mol: float = 1.0
    #: eV of one energy unit when this target runs in ASE; 1 for reduced units
    #: (one reduced energy = 1 eV, one reduced length = 1 Angstrom).
    ase_energy_unit_ev: float = 1.0

    def __init__(self, n_particles: int, spatial_dim: int, kT: float = 1.0, name: str = "energy"):
        super().__init__()
        if not isinstance(n_particles, int) or isinstance(n_particles, bool) or n_particles < 1:
            raise ValueError(f"n_particles must be a positive int, got {n_particles!r}")
        if spatial_dim not in (1, 2, 3):
            raise ValueError(f"spatial_dim must be 1, 2 or 3, got {spatial_dim!r}")
        self.n_particles = n_particles
        self.spatial_dim = spatial_dim
        self.kT = _check_kT(kT)
        self.name = str(name)
        self.n_evaluations = 0

    # ------------------------------------------------------------------ shape
    @property
    def dim(self) -> int:
        """Total number of coordinates, ``n_particles * spatial_dim``."""
        return self.n_particles * self.spatial_dim

    @property
    def is_particle_system(self) -> bool:
        """Alias of :attr:`translation_invariant` (sampled centre-of-mass free), kept for old code."""
        return bool(self.translation_invariant)

    @property
    def event_shape(self) -> tuple[int, int]:
        return (self.n_particles, self.spatial_dim)

    def identity(self) -> dict[str, Any]:
        """Plain-data description of this target, stored in checkpoints so that a
        checkpoint cannot be used with a different system."""
        return {
            "name": self.name,
            "class": type(self).__name__,
            "n_particles": self.n_particles,
            "spatial_dim": self.spatial_dim,
            "kT": self.kT,
            **self._identity_extra(),
        }

    def _identity_extra(self) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------- public API
    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Energy of each configuration.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, dim)`` or ``(B, n_particles, spatial_dim)``, floating point,
            finite, in :attr:`length_unit`.

        Returns
        -------
        torch.Tensor
            ``(B,)`` energies in :attr:`energy_unit`.
        """
        x3 = self._validate(x)
        self.n_evaluations += x3.shape[0]
        return self._energy(x3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.energy(x)

    def energy_and_forces(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies and forces ``-dE/dx`` of each configuration.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, dim)`` or ``(B, n_particles, spatial_dim)`` in :attr:`length_unit`.

        Returns
        -------
        energy : torch.Tensor
            ``(B,)`` in :attr:`energy_unit`.
        forces : torch.Tensor
            Same shape as ``x``, in energy_unit per length_unit.
        """
        x3 = self._validate(x)
        self.n_evaluations += x3.shape[0]
        e, f = self._energy_and_forces(x3)
        return e, f.reshape(x.shape)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised log density ``-E(x)/kT``, shape ``(B,)``."""
        return -self.energy(x) / self.kT

    def reset_counter(self) -> int:
        """Reset :attr:`n_evaluations` to zero and return its previous value."""
        n, self.n_evaluations = self.n_evaluations, 0
        return n

    # ------------------------------------------------------ capability hooks
    def initial_configuration(self, seed: int = 0) -> torch.Tensor:
        """A compact, overlap-free starting configuration for MD, ``(n_particles, spatial_dim)`` float64.

        Default: random sequential placement at reduced density about 0.6 with minimum
        distance 0.9 length units (zeros for one particle), centred when
        :attr:`translation_invariant`. Override with a better start for your system.

        Parameters
        ----------
        seed : int
            Seeds the placement.
        """
        n, d = self.n_particles, self.spatial_dim
        if n == 1:
            return torch.zeros(1, d, dtype=torch.float64)
        x = random_sequential_placement(np.random.default_rng(seed), n, d, box=(n / 0.6) ** (1.0 / d),
                                        min_distance=0.9)
        if self.translation_invariant:
            x = x - x.mean(0)
        return torch.as_tensor(x, dtype=torch.float64)

    def openmm_pair_potential(self) -> "PairPotential | None":
        """This energy as one OpenMM custom pair force, or None when it has no such form.

        Return a :class:`~idem_md.energies.pair.PairPotential` (an expression of the squared
        pair distance ``r2`` and its parameters, in this energy's units) when the whole
        energy is a sum over unordered pairs; :meth:`to_openmm_system` and OpenMM MD then
        work for the subclass with no library edit. Default None.
        """
        return None

    @property
    def default_md_engine(self) -> str:
        """The engine :func:`idem_md.md.run_md` uses with ``MDConfig(engine="auto")``:
        ``"openmm"`` when :meth:`openmm_pair_potential` gives an OpenMM form, else ``"torch"``
        (batched BAOAB Langevin over :meth:`energy_and_forces`)."""
        return "openmm" if self.openmm_pair_potential() is not None else "torch"

    # ---------------------------------------------------------------- bridges
    def to_ase_calculator(self):
        """ASE calculator evaluating this energy (1 length unit = 1 Angstrom, 1 energy unit =
        :attr:`ase_energy_unit_ev` eV); see :class:`idem_md.bridges.ase.EnergyCalculator`."""
        from ..bridges.ase import EnergyCalculator  # ASE is imported only when asked for

        return EnergyCalculator(self)

    def to_ase_atoms(self, positions: Any):
        """ASE Atoms of one configuration ``(n_particles, spatial_dim)`` (dummy atoms of 1 amu,
        no cell); see :func:`idem_md.bridges.ase.make_atoms`."""
        from ..bridges.ase import make_atoms

        return make_atoms(self, positions)

    def to_openmm_system(self):
        """OpenMM System with this energy (nm, kJ/mol, 1 amu particles) built from
        :meth:`openmm_pair_potential`; see :func:`idem_md.bridges.openmm.energy_to_openmm_system`."""
        from ..bridges.openmm import energy_to_openmm_system  # OpenMM is imported only when asked for

        return energy_to_openmm_system(self)

    # ------------------------------------------------------- subclass hooks
    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        """Energies of a validated batch ``(B, n, d) -> (B,)``. Override this."""
        raise NotImplementedError

    def _energy_and_forces(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Default: forces by autograd through :meth:`_energy`. ``(B, n, d) -> ((B,), (B, n, d))``."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            e = self._energy(xg)
            (grad,) = torch.autograd.grad(e.sum(), xg)
        return e.detach(), -grad

    # ------------------------------------------------------------ validation
    def validate(self, x: Any, argname: str = "x") -> torch.Tensor:
        """``x`` checked (tensor, float32/64, shape, device, finite) and reshaped to ``(B, n, d)``;
        a one-line ``TypeError`` / ``ValueError`` naming ``argname`` otherwise."""
        return self._validate(x, argname)

    def home_device(self) -> torch.device:
        """The device of this energy's buffers (CPU when it has none): where to put its inputs."""
        return self._device() or torch.device("cpu")

    def _validate(self, x: Any, argname: str = "x") -> torch.Tensor:
        n, d = self.n_particles, self.spatial_dim
        expected = f"(B, {self.dim}) or (B, {n}, {d})"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{argname} must be a torch.Tensor of shape {expected}, got {type(x).__name__}")
        if x.dtype not in (torch.float32, torch.float64):  # half precision overflows LJ's r^-12
            raise TypeError(f"{argname} must be a floating-point tensor (float32 or float64), got dtype {x.dtype}")
        if x.ndim == 2 and x.shape[1] == self.dim:
            x3 = x.reshape(x.shape[0], n, d)
        elif x.ndim == 3 and tuple(x.shape[1:]) == (n, d):
            x3 = x
        else:
            hint = " (add a batch dimension with x[None])" if x.ndim == 1 else ""
            raise ValueError(
                f"{argname} must have shape {expected} for {self.name} "
                f"({n} particles in {d}D), got {tuple(x.shape)}{hint}"
            )
        dev = self._device()
        if dev is not None and x.device.type != dev.type:
            raise ValueError(f"{argname} is on {x.device} but {self.name} lives on {dev}; move one with .to()")
        if x3.shape[0] > 0 and not bool(torch.isfinite(x3).all()):  # cheap whole-tensor check first (hot path)
            finite = torch.isfinite(x3).flatten(1).all(1)
            bad = torch.nonzero(~finite).flatten()[:5].tolist()
            raise ValueError(f"{argname} contains NaN or infinite coordinates (batch rows {bad}...)")
        return x3

    def _device(self) -> torch.device | None:
        for b in self.buffers():
            return b.device
        return None

    def extra_repr(self) -> str:
        return f"name={self.name!r}, n_particles={self.n_particles}, spatial_dim={self.spatial_dim}, kT={self.kT}"


def _check_kT(kT: Any) -> float:
    if isinstance(kT, bool) or not isinstance(kT, (int, float)):
        raise TypeError(f"kT must be a positive float (thermal energy in the energy's unit), got {type(kT).__name__}")
    kT = float(kT)
    if not (math.isfinite(kT) and kT > 0):
        raise ValueError(f"kT must be a finite positive float (thermal energy in the energy's unit), got {kT!r}")
    return kT
