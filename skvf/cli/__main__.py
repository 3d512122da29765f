"""``python -m skvf.cli``: the ``skvf`` command."""

import sys

from . import main

sys.exit(main())
