"""``python -m amop_trio`` runs the ``amop`` command."""

import sys

from ._cli import main

sys.exit(main())
