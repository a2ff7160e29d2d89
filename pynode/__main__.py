"""``python -m pynode ...``: the same as the ``pynode`` command (see :mod:`pynode.cli`)."""

import sys

from pynode.cli import main

sys.exit(main())
