"""
``twistd wavebox``.  Kept light: every plugin scan imports this module, so the
real work is imported only when the plugin is used.
"""

from zope.interface import implementer

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin


@implementer(IServiceMaker, IPlugin)
class WaveboxServiceMaker:
    tapname = "wavebox"
    description = "A standalone federated Wave server (XMPP S2S, Wave federation, console)"

    @property
    def options(self):
        from wavebox.config import Options
        return Options

    def makeService(self, options):
        from wavebox.service import makeServiceFromOptions
        return makeServiceFromOptions(options)


serviceMaker = WaveboxServiceMaker()
