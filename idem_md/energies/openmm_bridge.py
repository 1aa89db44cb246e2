"""Old home of the OpenMM bridge: re-exports :mod:`idem_md.bridges.openmm` (imports OpenMM)."""

from ..bridges.openmm import *  # noqa: F401,F403
from ..bridges.openmm import __all__  # noqa: F401
from ..bridges.openmm import _in_unit, _resolve_platform  # noqa: F401  (used by old code)
