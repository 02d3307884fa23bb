"""``python -m bench SCENARIO [options]``."""

import sys

from bench.cli import main

# Load processes are spawned, and spawning imports __main__ again: only the
# real entry runs the benchmark.
if __name__ == "__main__":
    sys.exit(main())
