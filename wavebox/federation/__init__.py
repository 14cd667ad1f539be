"""The Wave federation protocol over XMPP: host side, remote side and the outbox."""
