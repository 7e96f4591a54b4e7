"""`python -m daemon` is `smsgw`."""

import sys

from daemon.cli import main

# Guarded: the validator's fork server imports the main module (daemon/validator.py).
if __name__ == "__main__":
    sys.exit(main())
