"""XMPP server-to-server: streams, STARTTLS, dialback, peer discovery, disco and ping.

This package knows nothing of waves except the disco identity it is told to advertise."""
