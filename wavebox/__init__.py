"""
wavebox: a standalone federated Wave server on Twisted.

Layers, from the bottom (arrows point down only): ``wavebox.model`` (pure wave
model), ``wavebox.wire`` (protocol buffers), ``wavebox.store``,
``wavebox.server`` (wave server core), ``wavebox.xmpp`` (XMPP S2S) and
``wavebox.federation`` (the Wave federation protocol over XMPP),
``wavebox.console``, and ``wavebox.service`` wiring them for ``twistd``.
"""

__version__ = "0.1.0"
