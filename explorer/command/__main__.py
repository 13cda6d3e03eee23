"""``python -m explorer.command``: the ``explorer`` command, in the interpreter that runs it."""

import sys

from explorer.command import main

sys.exit(main())
