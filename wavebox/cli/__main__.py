"""``python -m wavebox.cli``: the ``wavebox`` command without the installed script."""

import sys

from wavebox.cli import main

sys.exit(main())
