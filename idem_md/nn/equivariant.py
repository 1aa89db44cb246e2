r"""E(3)-equivariant score network for clusters of identical particles (e3nn).

:class:`EquivariantScoreNet` is a small NequIP-style message-passing network on
the fully connected particle graph (every ordered pair ``i != j``):

* edge attributes: spherical harmonics :math:`Y^{l}(\hat r_{ij})`, ``l <= sh_lmax``,
  of the relative positions :math:`r_{ij} = x_j - x_i`, and a Gaussian radial
  basis of :math:`|r_{ij}|` (``e3nn.math.soft_one_hot_linspace``) plus
  :math:`|r_{ij}|` itself, so that far pairs are not invisible;
* initial node features: the same scalars for every particle (the particles are
  identical), computed from a sinusoidal embedding of the time ``t``, plus, when
  ``particle_types`` is given (molecules: one type per atom kind), a learned
  embedding of each particle's type; each layer adds a learned projection of the
  time features to its even-scalar channels;
* each layer: a depthwise (``"uvu"``) tensor product of the neighbour's
  features with :math:`Y(\hat r_{ij})`, weighted per edge by an MLP of the radial
  basis, summed over neighbours, mixed by ``o3.Linear`` plus a self-connection,
  and passed through an ``e3nn.nn.Gate``; residual when the irreps allow;
* readout: one ``1o`` vector per particle, minus its mean over particles.

Symmetry. Only relative positions enter, so the output is translation
invariant; node updates are identical for all particles and neighbours are
summed, so it is permutation equivariant (among particles of the same type when
``particle_types`` is given); every irrep carries its parity
(``Y^l`` has parity :math:`(-1)^l`, the tensor products and gates respect
parity, odd scalars only meet odd activations), so the output vector transforms
under the full orthogonal group O(3), reflections included. Altogether the
network is E(3)-equivariant, and its output is centre-of-mass free.

Convention. In e3nn >= 0.5 the ``1o`` irrep is in Cartesian ``(x, y, z)`` order
(``o3.Irreps("1o").D_from_matrix(R) == R``), so the ``1o`` output is read back as
a Cartesian vector without permutation; a test guards this convention.

2D systems are embedded in the plane ``z = 0``; the reflection ``z -> -z`` fixes
such inputs, so by O(3)-equivariance the ``z`` output equals minus itself, i.e. 0.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import torch

from .embeddings import ScoreNetConfigMixin, SinusoidalTimeEmbedding, check_score_inputs, config_from_mapping

__all__ = ["EquivariantScoreNet", "EquivariantScoreNetConfig"]


@dataclass(frozen=True)
class EquivariantScoreNetConfig:
    """Hyperparameters of :class:`EquivariantScoreNet`.

    Parameters
    ----------
    hidden_irreps : str
        e3nn irreps of the hidden node features; must contain even scalars
        ``0e`` and vectors ``1o`` (the output type). Every non-scalar irrep is
        gated by an extra even scalar.
    n_layers : int
        Message-passing layers (>= 1).
    sh_lmax : int
        Highest degree of the edge spherical harmonics (>= 1).
    n_radial_basis : int
        Gaussian radial basis functions on ``[0, radial_max]`` (>= 2).
    radial_max : float
        Range of the Gaussian radial basis, in the target's length unit; set
        it to about the largest pair distance of equilibrium samples (LJ-13 in
        r_m: ~5, DW-4: ~7). Farther pairs are still seen through an extra
        radial input ``|r_ij| / radial_max``, which is not bounded.
    radial_hidden : int
        Width of the two hidden layers of the radial MLP that outputs the
        per-edge tensor-product weights of all layers.
    time_embedding_dim : int
        Sinusoidal time features, even.
    particle_types : tuple of int or None
        One type index (>= 0) per particle, embedded into the initial scalars (for
        molecules, e.g. the target's ``particle_types()`` hook); None (the default, and
        every older checkpoint): identical particles.
    """

    hidden_irreps: str = "32x0e + 8x1o"
    n_layers: int = 3
    sh_lmax: int = 2
    n_radial_basis: int = 20
    radial_max: float = 5.0
    radial_hidden: int = 64
    time_embedding_dim: int = 32
    particle_types: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.particle_types is not None:
            types = self.particle_types
            if isinstance(types, (str, bytes)) or not hasattr(types, "__len__") or not len(types) or not all(
                    isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in types):
                raise ValueError(f"particle_types must be None or a non-empty sequence of ints >= 0 (one per "
                                 f"particle), got {types!r}")
            object.__setattr__(self, "particle_types", tuple(int(t) for t in types))
        for name, low in (("n_layers", 1), ("sh_lmax", 1), ("n_radial_basis", 2), ("radial_hidden", 1),
                          ("time_embedding_dim", 2)):  # fmt: skip
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
        if self.time_embedding_dim % 2:
            raise ValueError(f"time_embedding_dim must be even, got {self.time_embedding_dim}")
        r = self.radial_max
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not (math.isfinite(r) and r > 0):
            raise ValueError(f"radial_max must be a finite positive float (length unit), got {r!r}")
        if not isinstance(self.hidden_irreps, str):
            raise TypeError(f"hidden_irreps must be an e3nn irreps string, got {type(self.hidden_irreps).__name__}")
        _parse_hidden_irreps(self.hidden_irreps)


def _parse_hidden_irreps(text: str):
    """Parse, sort and simplify the hidden irreps; check they can produce a gated ``1o`` output."""
    from e3nn import o3

    try:
        irreps = o3.Irreps(text).sort().irreps.simplify()
    except (ValueError, AssertionError) as exc:
        raise ValueError(f"hidden_irreps={text!r} is not a valid e3nn irreps string: {exc}") from None
    if irreps.count("0e") == 0 or irreps.count("1o") == 0:
        raise ValueError(f"hidden_irreps must contain even scalars (0e) and vectors (1o), got {text!r}")
    return irreps


def _scalar_slice(irreps) -> slice:
    """Columns of the (single, after simplify) ``0e`` block of ``irreps``."""
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        if ir.l == 0 and ir.p == 1:
            return sl
    raise ValueError(f"irreps {irreps} have no 0e block")


class _Interaction(torch.nn.Module):
    """One message-passing layer: ``(B, n, irreps_in) -> (B, n, irreps_out)``."""

    def __init__(self, irreps_in, irreps_out, irreps_sh, time_dim: int, n_neighbors: int):
        super().__init__()
        from e3nn import nn as enn
        from e3nn import o3

        self.irreps_in = irreps_in
        self.n_neighbors = n_neighbors
        self.scalars = _scalar_slice(irreps_in)
        # Time enters the even scalars only: a time-dependent shift of invariant features.
        self.time_proj = torch.nn.Linear(time_dim, self.scalars.stop - self.scalars.start)
        self.lin1 = o3.Linear(irreps_in, irreps_in)

        # Depthwise tensor product neighbour features x Y(r_ij), keeping only output
        # irreps the layer can use; per-edge weights (tp.weight_numel) come from the radial MLP.
        mid, instructions = [], []
        for i1, (mul, ir_in) in enumerate(irreps_in):
            for i2, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in irreps_out:
                        instructions.append((i1, i2, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        irreps_mid, perm, _ = o3.Irreps(mid).sort()
        instructions = [(i1, i2, perm[k], mode, train) for i1, i2, k, mode, train in instructions]
        self.tp = o3.TensorProduct(
            irreps_in, irreps_sh, irreps_mid, instructions, internal_weights=False, shared_weights=False
        )

        scalars = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l > 0])
        self.gate = enn.Gate(
            scalars, [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars],
            f"{gated.num_irreps}x0e", [torch.sigmoid],
            gated,
        )  # fmt: skip
        self.lin2 = o3.Linear(irreps_mid, self.gate.irreps_in)
        self.self_connection = o3.Linear(irreps_in, self.gate.irreps_in)
        self.irreps_out = self.gate.irreps_out
        self.residual = irreps_in == self.irreps_out

    def forward(self, h: torch.Tensor, time: torch.Tensor, edge_sh: torch.Tensor, edge_weights: torch.Tensor,
                senders: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """``h`` (B, n, F_in), ``time`` (B, T), ``edge_sh`` (B*E, S), ``edge_weights`` (B*E, W),
        ``senders`` (E,) with edges grouped by receiver -> (B, n, F_out)."""
        B, n, _ = h.shape
        sl = self.scalars
        shift = self.time_proj(time)[:, None, :].expand(B, n, -1)  # (B, n, n0e)
        h = torch.cat([h[..., : sl.start], h[..., sl] + shift, h[..., sl.stop :]], dim=-1)

        src = self.lin1(h)[:, senders].reshape(-1, h.shape[-1])  # (B*E, F_in)
        msg = self.tp(src, edge_sh, edge_weights)  # (B*E, F_mid)
        # Edges are grouped by receiver, so aggregation is a reshape + sum (no scatter).
        agg = msg.view(B, n, self.n_neighbors, -1).sum(dim=2) / math.sqrt(self.n_neighbors)  # (B, n, F_mid)

        out = self.gate(self.self_connection(h) + self.lin2(agg))  # (B, n, F_out)
        return out + h if self.residual else out


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _restore_buffer_masters(module: torch.nn.Module, incompatible_keys: Any = None) -> None:
    """Overwrite floating buffers with their float64 masters, in each buffer's current dtype/device."""
    masters = getattr(module, "_buffer_masters", None) or {}
    with torch.no_grad():
        for name, master in masters.items():
            module.get_buffer(name).copy_(master)


class EquivariantScoreNet(ScoreNetConfigMixin, torch.nn.Module):
    """E(3)-equivariant, centre-of-mass-free score network ``s(x, t)`` for particle systems.

    See the module docstring for the architecture and its symmetries. Built in
    float32 on the CPU; move it with ``.to(dtype=..., device=...)``: inputs must
    match the parameters' dtype and device. Cost: all ``n (n - 1)`` ordered pairs
    are edges; with the defaults, LJ-13 at batch 512 takes ~0.5 s per
    forward+backward in float32 on one idle CPU core.

    Parameters
    ----------
    n_particles : int
        Particles per configuration (>= 2).
    spatial_dim : int
        2 (embedded in the plane z = 0) or 3.
    config : EquivariantScoreNetConfig, mapping or None
        Hyperparameters (None: defaults).

    Examples
    --------
    >>> import torch
    >>> net = EquivariantScoreNet(4, 2, {"n_layers": 2})
    >>> x, t = torch.randn(3, 4, 2), torch.rand(3)
    >>> s = net(x, t)
    >>> s.shape
    torch.Size([3, 4, 2])
    >>> bool(s.mean(dim=1).abs().max() < 1e-5)  # centre-of-mass free
    True
    """

    kind = "e3nn"

    def __init__(
        self,
        n_particles: int,
        spatial_dim: int,
        config: EquivariantScoreNetConfig | Mapping[str, Any] | None = None,
    ):
        super().__init__()
        if isinstance(n_particles, bool) or not isinstance(n_particles, int) or n_particles < 2:
            raise ValueError(f"n_particles must be an int >= 2 for a particle system, got {n_particles!r}")
        if spatial_dim not in (2, 3) or isinstance(spatial_dim, bool):
            raise ValueError(f"spatial_dim must be 2 or 3, got {spatial_dim!r}")
        self.n_particles = n_particles
        self.spatial_dim = spatial_dim
        self.config = config_from_mapping(EquivariantScoreNetConfig, config)
        types = self.config.particle_types
        if types is not None and len(types) != n_particles:
            raise ValueError(f"particle_types must have one entry per particle ({n_particles}), got {len(types)}")

        # e3nn computes its Clebsch-Gordan constants (buffers such as ``_w3j_1_2_1``)
        # in the default dtype. Build in float64 and keep float64 masters of all
        # floating buffers, restored after every dtype/device move and state-dict
        # load: otherwise ``.double()`` upcasts float32-rounded coefficients and
        # float64 equivariance only holds to ~1e-9 instead of ~1e-15.
        with _default_dtype(torch.float64):
            self._build()
        self._buffer_masters = {
            name: b.detach().clone() for name, b in self.named_buffers() if b.is_floating_point() and b.numel()
        }
        self.register_load_state_dict_post_hook(_restore_buffer_masters)
        self.float()

        # Fully connected graph without self-loops, edges grouped by receiver i:
        # edge (i, j) for j != i in increasing j, so senders.view(n, n-1)[i] lists i's neighbours.
        n = n_particles
        off_diagonal = ~torch.eye(n, dtype=torch.bool)
        self.register_buffer("senders", torch.arange(n).expand(n, n)[off_diagonal], persistent=False)
        self.register_buffer("receivers", torch.arange(n).repeat_interleave(n - 1), persistent=False)
        if types is not None:  # derived from the config, so not part of the state dict
            self.register_buffer("particle_type_index", torch.tensor(types, dtype=torch.long), persistent=False)

    def _build(self) -> None:
        """Create the submodules from ``self.config``."""
        from e3nn import nn as enn
        from e3nn import o3

        cfg = self.config
        T = cfg.time_embedding_dim
        self.time_embedding = SinusoidalTimeEmbedding(T)
        self.time_mlp = torch.nn.Sequential(torch.nn.Linear(T, T), torch.nn.SiLU(), torch.nn.Linear(T, T))
        hidden = _parse_hidden_irreps(cfg.hidden_irreps)
        n_scalars = hidden.count("0e")
        self.node_embedding = torch.nn.Linear(T, n_scalars)  # identical particles: scalars from t only
        if cfg.particle_types is not None:  # absent otherwise: older state dicts load unchanged
            self.type_embedding = torch.nn.Embedding(max(cfg.particle_types) + 1, n_scalars)
        self.sh = o3.SphericalHarmonics(o3.Irreps.spherical_harmonics(cfg.sh_lmax), normalize=True,
                                        normalization="component")  # fmt: skip
        layers, irreps = [], o3.Irreps(f"{n_scalars}x0e")
        for _ in range(cfg.n_layers):
            layers.append(_Interaction(irreps, hidden, self.sh.irreps_out, T, self.n_particles - 1))
            irreps = layers[-1].irreps_out
        self.layers = torch.nn.ModuleList(layers)
        # One radial MLP with a separate output block per layer: the hidden layers,
        # which dominate the per-edge cost, are evaluated once rather than per layer.
        self._weight_numels = [layer.tp.weight_numel for layer in layers]
        self.radial = enn.FullyConnectedNet(
            [cfg.n_radial_basis + 1, cfg.radial_hidden, cfg.radial_hidden, sum(self._weight_numels)],
            torch.nn.functional.silu,
        )
        self.readout = o3.Linear(irreps, "1x1o")

    def _apply(self, fn, *args, **kwargs):
        # Every .to()/.float()/.double()/.cuda() goes through _apply.
        out = super()._apply(fn, *args, **kwargs)
        _restore_buffer_masters(self)
        return out

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Score at positions ``x`` and times ``t``.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, n_particles, spatial_dim)`` positions, in the target's length
            unit; same dtype and device as the network.
        t : torch.Tensor
            ``(B,)`` diffusion times in [0, 1] (a scalar is broadcast).

        Returns
        -------
        torch.Tensor
            ``(B, n_particles, spatial_dim)``, zero mean over particles.
        """
        x, t = check_score_inputs(self, x, t, self.n_particles, self.spatial_dim)
        out = self._vectors(x, t)
        # For 2D inputs the z component is exactly 0 (see forward_3d); drop it.
        return out[..., : self.spatial_dim]

    def forward_3d(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Like :meth:`forward` but always returns the 3D vectors ``(B, n, 3)``.

        For ``spatial_dim == 2`` the input is embedded at ``z = 0`` and the
        returned ``z`` components are exactly zero, with no explicit zeroing:
        the reflection ``z -> -z`` fixes planar inputs, so every feature
        component that is odd under it (``z`` of a ``1o`` vector, the ``xz`` and
        ``yz`` components of ``Y^2``, ...) is a sum of products each containing
        an odd factor, and e3nn's Clebsch-Gordan tensors have exact zeros
        where parity demands; so these components are exactly 0, not just
        small (the test suite checks ``== 0`` in float64).
        """
        x, t = check_score_inputs(self, x, t, self.n_particles, self.spatial_dim)
        return self._vectors(x, t)

    def _vectors(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Validated ``x`` (B, n, d), ``t`` (B,) -> COM-free vectors (B, n, 3)."""
        from e3nn.math import soft_one_hot_linspace

        cfg = self.config
        B, n, d = x.shape
        pos = x - x.mean(dim=1, keepdim=True)  # (B, n, d), centred
        if d == 2:
            pos = torch.nn.functional.pad(pos, (0, 1))  # (B, n, 3), plane z = 0

        rel = (pos[:, self.senders] - pos[:, self.receivers]).reshape(-1, 3)  # (B*E, 3), x_j - x_i
        edge_sh = self.sh(rel)  # (B*E, S)
        dist = rel.norm(dim=-1)  # (B*E,)
        gauss = soft_one_hot_linspace(dist, 0.0, cfg.radial_max, cfg.n_radial_basis, basis="gaussian", cutoff=False)
        # Gaussians scaled to ~unit second moment, plus the scaled distance itself so
        # that pairs beyond radial_max (strongly noised samples) still get messages.
        edge_basis = torch.cat([gauss * math.sqrt(cfg.n_radial_basis), dist[:, None] / cfg.radial_max], dim=-1)

        time = self.time_mlp(self.time_embedding(t))  # (B, T)
        h = self.node_embedding(time)[:, None, :].expand(B, n, -1)  # (B, n, n0e), identical particles
        if self.config.particle_types is not None:
            h = h + self.type_embedding(self.particle_type_index)[None]  # (B, n, n0e), per-type scalars
        edge_weights = self.radial(edge_basis).split(self._weight_numels, dim=-1)  # per layer (B*E, W_l)
        for layer, w in zip(self.layers, edge_weights):
            h = layer(h, time, edge_sh, w, self.senders)
        out = self.readout(h)  # (B, n, 3), Cartesian (x, y, z) in e3nn >= 0.5
        return out - out.mean(dim=1, keepdim=True)

    def extra_repr(self) -> str:
        return f"n_particles={self.n_particles}, spatial_dim={self.spatial_dim}"
