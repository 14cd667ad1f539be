"""
What every stream does to a stanza, whichever kind of stream carries it
(S2S in :mod:`wavebox.xmpp.streams`, XEP-0114 in
:mod:`wavebox.xmpp.component`): read its addresses, and put it in the
stream's namespace.
"""

from twisted.words.protocols.jabber import jid

NS_CLIENT = "jabber:client"
NS_SERVER = "jabber:server"
NS_COMPONENT = "jabber:component:accept"
#: The namespaces a stanza may arrive in from a handler, or be sent in.
_STANZA_NAMESPACES = (None, "", NS_CLIENT, NS_SERVER, NS_COMPONENT)


def parse_jid(value):
    """A JID, or None for an empty or malformed address (a peer's input)."""
    if not value:
        return None
    try:
        return jid.internJID(value)
    except (jid.InvalidFormat, UnicodeError):
        return None


def to_stream_namespace(element, namespace):
    """
    Put a stanza (and children that inherited its namespace) into the
    stream's ``namespace`` (``jabber:server`` or ``jabber:component:accept``),
    so that it goes out without an ``xmlns`` of its own: handlers build
    ``jabber:client`` or namespace-less stanzas, and a peer checks the
    addresses only of stanzas in the stream's namespace (Prosody does so on
    component streams).
    """
    if element.uri in _STANZA_NAMESPACES and element.uri != namespace:
        old = element.uri
        element.uri = namespace
        if element.defaultUri in _STANZA_NAMESPACES:
            element.defaultUri = namespace
        for child in element.elements():
            if child.uri == old:
                to_stream_namespace(child, namespace)
    return element
