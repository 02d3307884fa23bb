"""``python -m rtgateway.client``: see :mod:`rtgateway.client.cli`."""

from rtgateway.client.cli import main

main()
