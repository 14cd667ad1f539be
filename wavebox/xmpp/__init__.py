"""XMPP server-to-server: streams, STARTTLS, dialback, peer discovery, disco and ping.

This package knows nothing of waves except how a wave service shows itself
in disco (so that discovery can find one) and the FedOne server ping; what
our own JIDs are and offer, the handlers on the streams declare."""
