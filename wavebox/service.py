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
    if config.component:
        # The XMPP server does S2S for us: no S2S listener of our own.
        makeComponentService(config).setServiceParent(top)
    return top


def makeComponentService(config, handlers=()):
    """
    Component mode (XEP-0114): one stream to the XMPP server's component port,
    carrying the same handlers as an S2S stream.
    """
    from wavebox.xmpp.component import ExternalComponent

    host, port = config.component
    component = ExternalComponent(host, port, config.component_jid, config.component_secret,
                                  handlers=handlers)
    component.setName("xmpp-component")
    return component
