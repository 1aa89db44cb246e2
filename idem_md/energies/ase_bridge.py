"""Old home of the ASE bridge: re-exports :mod:`idem_md.bridges.ase` (imports ASE)."""

from ..bridges.ase import *  # noqa: F401,F403
from ..bridges.ase import __all__  # noqa: F401
