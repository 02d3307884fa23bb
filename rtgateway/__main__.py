"""``python -m rtgateway``: the developer commands of :func:`rtgateway.tokens.main`."""

import sys

from rtgateway.tokens import main

if __name__ == "__main__":
    sys.exit(main())
