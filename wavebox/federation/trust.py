"""
Who may act for which wave domain (design: "trust is checked at the edge").

The XMPP layer guarantees that a stanza's ``from`` domain was authenticated
on its stream (TLS certificate or dialback, RFC 6120 / XEP-0220).  The wave
service of domain ``D`` is usually the JID ``wave.D`` (FedOne/WIAB
convention, §8.1), sometimes ``D`` itself, sometimes another JID that disco
on ``D`` names (§8.2).  So an authenticated JID domain ``J`` speaks for wave
domain ``D`` when ``J`` is ``D``, or a subdomain of it (whoever controls
``D``'s DNS controls its subdomains), or the JID that discovery of ``D``
returned.

FedOne and WIAB never made these checks (they route updates by the wavelet
name and trust the payload): our host and remote refuse, with
``bad-request``, any request whose sender does not speak for the domain it
acts for.
"""

from twisted.internet import defer

from wavebox.federation.stanzas import FederationError


class NotTrusted(FederationError):
    """A peer acted for a domain it does not speak for: always ``bad-request``."""

    def __init__(self, text):
        FederationError.__init__(self, "bad-request", text)


def jid_domain(jid):
    """The domain part of a JID (``wave.b.test`` of ``wave.b.test/res``)."""
    jid = jid or ""
    if "@" in jid:
        jid = jid.split("@", 1)[1]
    return jid.split("/", 1)[0].rstrip(".").lower()


def speaks_for_now(sender_domain, wave_domain):
    """The checks that need no network: equal, or a subdomain."""
    sender_domain, wave_domain = sender_domain.lower(), wave_domain.lower()
    return sender_domain == wave_domain or sender_domain.endswith("." + wave_domain)


@defer.inlineCallbacks
def speaks_for(sender_domain, wave_domain, discover=None):
    """
    True when ``sender_domain`` (authenticated) may act for ``wave_domain``;
    asks ``discover(wave_domain)`` (a Deferred JID, cached by discovery) only
    when the name alone does not say.
    """
    if speaks_for_now(sender_domain, wave_domain):
        return True
    if discover is None:
        return False
    try:
        jid = yield discover(wave_domain)
    except Exception:
        return False
    return jid_domain(str(jid)) == sender_domain.lower()


@defer.inlineCallbacks
def speaks_for_any(sender_domain, wave_domains, discover=None):
    """True when the sender speaks for at least one of ``wave_domains``."""
    wave_domains = sorted(set(d.lower() for d in wave_domains))
    for domain in wave_domains:
        if speaks_for_now(sender_domain, domain):
            return True
    for domain in wave_domains:
        ok = yield speaks_for(sender_domain, domain, discover)
        if ok:
            return True
    return False
