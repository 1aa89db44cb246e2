"""``python -m idem_md`` is the ``idem-md`` command (so ``torchrun -m idem_md train ...`` works)."""

import sys

from .cli import main

sys.exit(main())
