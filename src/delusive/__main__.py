"""``python -m delusive`` (and ``torchrun -m delusive``): the ``delusive`` command line."""

import sys

from delusive.cli.main import main

sys.exit(main())
