"""``python -m idem_md.cli ...``: the same program as ``idem-md``."""

import sys

from . import main

sys.exit(main())
