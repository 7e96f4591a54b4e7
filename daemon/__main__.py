"""`python -m daemon` is `smsgw`."""

import sys

from daemon.cli import main

sys.exit(main())
