"""``twistd`` on a reactor of the benchmark's choice.

``python -m bench.twistd REACTOR TWISTD-ARGS...`` installs the reactor (see
:mod:`bench.reactors`; uvloop needs its policy set before Twisted builds the
loop, which ``twistd --reactor`` cannot do) and then runs twistd exactly as
an operator would, so the gateway under test is the real service tree.
"""

from __future__ import annotations

import sys

from bench.reactors import install


def main() -> None:
    reactor_name, *arguments = sys.argv[1:]
    install(reactor_name)
    from twisted.scripts.twistd import run

    sys.argv = ["twistd", *arguments]
    run()


if __name__ == "__main__":
    main()
