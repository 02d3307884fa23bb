"""twistd plugin entry: command-line options and the service tree.

``twistd -n rtgateway --config config/rtgateway.toml`` runs a gateway. The
configuration is loaded and checked in ``postOptions``, so a bad file stops
twistd before anything starts, with one line naming the file, the key and
what is wrong.
"""

from __future__ import annotations

from twisted.python import usage

from rtgateway.app import Gateway
from rtgateway.config import ConfigError, load_config


class Options(usage.Options):
    optParameters = [
        ["config", "c", None, "Path to the gateway's TOML configuration file."],
    ]

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError(
                "--config is required: the path to a TOML file "
                "(config/rtgateway.toml is the development one)"
            )
        try:
            self.config = load_config(self["config"])
        except ConfigError as error:
            raise usage.UsageError(str(error)) from None


def makeService(options: Options) -> Gateway:
    from twisted.internet import reactor

    return Gateway(options.config, reactor)
