"""
Wiring: turn a validated :class:`wavebox.config.Config` into the running
services of ``twistd wavebox``.  The only module that knows every layer.
"""

import sys

from twisted.application import service
from twisted.logger import Logger

from wavebox.config import ConfigError

log = Logger()


def makeServiceFromOptions(options):
    """Entry point of the twistd plugin: a bad value stops start-up with one line."""
    try:
        config = options.config()
    except ConfigError as e:
        sys.stderr.write("wavebox: %s\n" % (e,))
        raise SystemExit(2)
    return makeService(config)


def makeService(config):
    top = service.MultiService()
    top.setName("wavebox")
    return top
