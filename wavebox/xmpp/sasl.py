"""
How a server-to-server stream is authenticated: SASL EXTERNAL with the TLS
certificate (RFC 6120 section 6, XEP-0178), or Server Dialback (XEP-0220,
:mod:`wavebox.xmpp.dialback`), as the operator's policy allows.

Why two methods: a peer that trusts our certificate needs no round trip to
our Authoritative Server, and many deployments (ejabberd without
``mod_s2s_dialback``, Prosody without ``mod_dialback``) accept nothing else;
peers with self-signed certificates have only dialback.

The policy (``s2s_auth``, :data:`POLICIES`), like Prosody's
``s2s_secure_auth``:

==============  =============================================================
``any``         EXTERNAL where the certificates allow it, dialback otherwise
                (the default)
``certificate`` EXTERNAL only: no dialback is offered, accepted or sent
``dialback``    dialback only: EXTERNAL is neither offered nor used
==============  =============================================================

Receiving Server (the peer opened the stream)
    After STARTTLS, ``<mechanisms><mechanism>EXTERNAL</mechanism>`` is
    offered when the peer's certificate chains to our trust roots and names
    the stream's ``from`` domain (XEP-0178 section 2, step 6).  An
    ``<auth mechanism='EXTERNAL'>`` is accepted when the authorization
    identity is empty (``=``) or that same domain (XEP-0178 section 2,
    step 8; RFC 6120 6.3.8); the certificate is checked again then.  We
    answer ``<success/>``, the peer restarts the stream (RFC 6120 6.4.6),
    and (``from``, ``to``) of the header is authenticated on it.
Originating Server (we opened the stream)
    When the peer offers EXTERNAL after STARTTLS and our certificate names
    the domain we speak for, we send ``<auth mechanism='EXTERNAL'>`` with
    that domain as authorization identity, restart the stream on
    ``<success/>``, and the header's pair is authenticated.  When EXTERNAL is
    not offered, or the peer answers ``<failure/>``, dialback follows (when
    the policy and the peer allow it).  EXTERNAL authenticates the pair of
    the stream header only; further pairs on the same stream are multiplexed
    with dialback or get a stream of their own.

Each authenticated pair is logged once, naming the method; a peer that
accepts neither method is logged once per stream on our side, and the
route's stanzas go back to their senders with the reason.
"""

import base64
import binascii

from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.xish import domish

from wavebox.xmpp import dialback as db

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
EXTERNAL = "EXTERNAL"

#: The values of ``s2s_auth``.
POLICIES = ("any", "certificate", "dialback")

#: The names the log lines and ``auth_methods`` use.
METHOD_EXTERNAL = "SASL EXTERNAL"
METHOD_DIALBACK = "dialback"

log = Logger()


class AuthenticationRefused(Exception):
    """
    No method authenticated a domain pair on a stream we opened: what the
    peer offered, what we tried, and why each did not work.
    """

    condition = "remote-server-timeout"

    def __init__(self, reason):
        Exception.__init__(self, reason)
        self.reason = reason

    def __str__(self):
        return self.reason


class SASLFailed(Exception):
    """The peer answered our ``<auth>`` with ``<failure>``; ``condition`` is its child."""

    def __init__(self, condition, text=None):
        Exception.__init__(self, condition, text)
        self.condition = condition
        self.text = text

    def __str__(self):
        text = "SASL EXTERNAL failed (%s)" % (self.condition or "no condition",)
        if self.text:
            text += ": " + self.text
        return text


def _sasl_element(name, condition=None, text=None):
    element = domish.Element((NS_SASL, name))
    if condition:
        element.addElement(condition)
    if text is not None:
        element.addContent(text)
    return element


def _failure_condition(element):
    condition, text = None, None
    for child in element.elements():
        if child.name == "text":
            text = str(child)
        elif condition is None:
            condition = child.name
    return condition, text


def _tls_kind(stream):
    if not stream.tls_active:
        return "no TLS"
    return "direct TLS" if getattr(stream, "direct_tls", False) else "STARTTLS"


def _record_method(stream, pair, method):
    methods = getattr(stream, "auth_methods", None)
    if methods is None:
        methods = stream.auth_methods = {}
    methods[pair] = method


def decode_authzid(text):
    """
    The authorization identity of an EXTERNAL initial response (RFC 6120
    6.4.2): no text or ``=`` is the empty one; otherwise base64.  None when
    the text is not base64 (``incorrect-encoding``).
    """
    text = (text or "").strip()
    if text in ("", "="):
        return ""
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def encode_authzid(domain):
    return base64.b64encode(domain.encode("utf-8")).decode("ascii")


class S2SAuthentication:
    """
    The authentication methods of one S2S service under one policy.

    ``server`` is the stream manager (:class:`wavebox.xmpp.server.S2SService`):
    this asks it for ``dialback`` (the XEP-0220 roles), ``tls`` (the
    :class:`wavebox.xmpp.tls.TLSPolicy`: ``certifies(domain)``), ``is_local``
    and ``count_failure``.  A stream offers
    what :class:`wavebox.xmpp.dialback.Dialback` needs, and ``xmlstream``,
    ``peer``, ``direction``, ``local``/``remote`` (outgoing) and the
    attributes this class keeps on it: ``offered`` (the peer's stream
    features), ``auth_methods`` (pair -> method), ``sasl`` (per-stream state).
    """

    def __init__(self, server, policy="any"):
        if policy not in POLICIES:
            raise ValueError("s2s_auth must be one of %s, not %r" % (", ".join(POLICIES), policy))
        self.server = server
        self.policy = policy

    @property
    def dialback_allowed(self):
        return self.policy != "certificate"

    @property
    def external_allowed(self):
        # Dialback's trust_certificates off means that certificates do not
        # stand in for dialback (tests that exercise the Authoritative Server).
        return self.policy != "dialback" and self.server.dialback.trust_certificates

    def our_certificate_names(self, domain):
        """Whether our own certificate names ``domain`` (else EXTERNAL cannot prove it)."""
        return self.server.tls is not None and self.server.tls.certifies(domain)

    # --- Receiving Server ---------------------------------------------------------

    def _peer_domain(self, stream):
        other = stream.xmlstream.otherEntity if stream.xmlstream else None
        return other.host if other is not None else None

    def _our_domain(self, stream):
        this = stream.xmlstream.thisEntity if stream.xmlstream else None
        return this.host if this is not None else None

    def _external_possible(self, stream):
        """Why EXTERNAL cannot authenticate this incoming stream, or None when it can."""
        if not self.external_allowed:
            return "s2s_auth is dialback"
        if not stream.tls_active:
            return "no TLS"
        domain = self._peer_domain(stream)
        if not domain:
            return "the stream header has no 'from'"
        if not stream.peer_proves(domain):
            verdict = stream.tls_verdict
            if verdict is not None and verdict.error:
                return "its certificate is no proof: %s" % (verdict.error,)
            if verdict is None or verdict.chain_ok is None:
                return "it sent no certificate"
            return "its certificate does not name %s" % (domain,)
        return None

    def add_features(self, stream, features):
        """
        The authentication features of an incoming stream's ``<features/>``
        once TLS is up (or not required): EXTERNAL when the certificate can
        be accepted, dialback (with errors, XEP-0220 2.4.2) when the policy
        allows it.  Nothing more after a SASL success (RFC 6120 6.4.6), but
        dialback for further pairs.
        """
        state = self._state(stream)
        why_not = None if state.get("done") else self._external_possible(stream)
        if not state.get("done") and why_not is None:
            mechanisms = features.addElement((NS_SASL, "mechanisms"))
            mechanisms.addElement("mechanism", content=EXTERNAL)
            state["offered"] = True
        elif why_not is not None:
            log.debug("incoming S2S stream {peer}: no SASL EXTERNAL offered: {why}",
                      peer=stream.peer, why=why_not)
        if self.dialback_allowed:
            dialback = features.addElement((db.NS_DIALBACK_FEATURE, "dialback"))
            dialback.addElement("errors")

    @staticmethod
    def _state(stream):
        state = getattr(stream, "sasl", None)
        if state is None:
            state = stream.sasl = {}
        return state

    def receive(self, stream, element):
        """A SASL element on an incoming stream: ``<auth>`` or ``<abort>``."""
        if element.name == "abort":
            stream.send(_sasl_element("failure", "aborted"))
            return
        if element.name != "auth":
            stream.fail("unsupported-stanza-type", "<%s xmlns='%s'/>" % (element.name, NS_SASL))
            return
        state = self._state(stream)
        if state.get("done"):
            # RFC 6120 6.4.6: the stream is authenticated; no second exchange.
            stream.fail("policy-violation", "SASL after a successful SASL negotiation")
            return
        domain = self._peer_domain(stream)
        local = self._our_domain(stream)
        mechanism = element.getAttribute("mechanism")
        if mechanism != EXTERNAL:
            self._refuse(stream, domain, "invalid-mechanism",
                         "mechanism %r is not offered" % (mechanism,))
            return
        if not stream.tls_active:
            self._refuse(stream, domain, "encryption-required", "no TLS")
            return
        why_not = self._external_possible(stream)
        if why_not is not None:
            self._refuse(stream, domain, "not-authorized", why_not)
            return
        authzid = decode_authzid(str(element))
        if authzid is None:
            self._refuse(stream, domain, "incorrect-encoding", "the response is not base64")
            return
        if authzid not in ("", domain):
            # XEP-0178: the authorization identity, when given, is the
            # domain of the stream header's 'from'.
            self._refuse(stream, domain, "invalid-authzid",
                         "authorization identity %r is not %s" % (authzid, domain))
            return
        if not self.server.is_local(local):
            self._refuse(stream, domain, "not-authorized", "we do not serve %r" % (local,))
            return
        pair = (domain, local)
        state["done"] = True
        stream.mark_authenticated(pair)
        _record_method(stream, pair, METHOD_EXTERNAL)
        log.info("incoming S2S stream {peer}: {originating} -> {receiving} authenticated "
                 "by SASL EXTERNAL over {tls} (its certificate names {originating})",
                 peer=stream.peer, originating=domain, receiving=local, tls=_tls_kind(stream))
        stream.send(_sasl_element("success"))
        # RFC 6120 6.4.6: the peer opens a new stream over the same TLS.
        stream.xmlstream.reset()
        stream.authenticated_changed()

    def _refuse(self, stream, domain, condition, why):
        log.warn("incoming S2S stream {peer}: SASL EXTERNAL for {domain} refused "
                 "<{condition}/>: {why}", peer=stream.peer, domain=domain or "?",
                 condition=condition, why=why)
        self.server.count_failure("sasl")
        stream.send(_sasl_element("failure", condition))

    def dialback_request_allowed(self, stream, element):
        """
        A ``db:result`` request on an incoming stream: refused with
        ``policy-violation`` when the policy is ``certificate``.
        """
        if self.dialback_allowed or element.name != "result":
            return True
        self.server.count_failure("dialback")
        stream.fail("policy-violation", "dialback is not accepted here (s2s_auth "
                    "certificate): authenticate with SASL EXTERNAL and a certificate "
                    "from a CA we trust")
        return False

    # --- Originating Server ---------------------------------------------------------

    def peer_offers(self, stream):
        """
        (EXTERNAL offered, dialback offered, the peer speaks SASL) by the
        peer's latest features.  A peer that authenticated us by SASL on this
        stream speaks it even though the features after the restart offer
        no more mechanisms (RFC 6120 6.4.6).
        """
        offered = getattr(stream, "offered", None) or {}
        mechanisms = offered.get((NS_SASL, "mechanisms"))
        names = [str(m).strip() for m in mechanisms.elements()
                 if m.name == "mechanism"] if mechanisms is not None else []
        dialback = (db.NS_DIALBACK_FEATURE, "dialback") in offered
        speaks_sasl = mechanisms is not None or bool(self._state(stream).get("done"))
        return EXTERNAL in names, dialback, speaks_sasl

    def may_multiplex(self, stream):
        """May another pair be added to this outgoing stream (only dialback can do that)?"""
        _, dialback, sasl = self.peer_offers(stream)
        return self.dialback_allowed and (dialback or not sasl)

    def _external_unusable(self, stream, local, remote):
        """Why we cannot use EXTERNAL for (local, remote) on this stream, or None."""
        external, _, _ = self.peer_offers(stream)
        if not self.external_allowed:
            return "s2s_auth is dialback"
        if not stream.tls_active:
            return "no TLS"
        if not external:
            return "%s does not offer SASL EXTERNAL (it does not accept our certificate)" % (
                remote,)
        if (local, remote) != (stream.local, stream.remote):
            return "EXTERNAL authenticates only the stream's own pair"
        if self._state(stream).get("tried"):
            return "already tried on this stream"
        if not self.our_certificate_names(local):
            return "our certificate does not name %s" % (local,)
        return None

    def originate(self, stream, local, remote):
        """
        Authenticate (local, remote) on our outgoing ``stream``: EXTERNAL when
        possible, else (or when it fails) dialback.  Fires with the method;
        fails with :class:`AuthenticationRefused` when neither worked, or
        with the dialback failure when only dialback was tried.
        """
        pair = (local, remote)
        if pair in stream.authenticated:
            return defer.succeed(getattr(stream, "auth_methods", {}).get(pair, METHOD_DIALBACK))
        tried = []
        why_not = self._external_unusable(stream, local, remote)
        if why_not is not None:
            tried.append("no SASL EXTERNAL: %s" % (why_not,))
            d = defer.maybeDeferred(self._dialback, stream, pair, tried)
            return d.addErrback(self._refused, stream, pair, tried)
        d = self._external(stream, local, remote)

        def external_failed(reason):
            if isinstance(reason.value, defer.CancelledError):
                return reason
            tried.append(str(reason.value))
            log.info("outgoing S2S stream {peer}: {why}; trying dialback for {local} -> "
                     "{remote}", peer=stream.peer, why=reason.value, local=local, remote=remote)
            return self._dialback(stream, pair, tried)
        d.addErrback(external_failed)
        return d.addErrback(self._refused, stream, pair, tried)

    def _dialback(self, stream, pair, tried):
        _, offered, sasl = self.peer_offers(stream)
        if not self.dialback_allowed:
            raise AuthenticationRefused("; ".join(tried + ["no dialback: s2s_auth is "
                                                          "certificate"]))
        if sasl and not offered:
            # A peer that speaks SASL but offers no dialback feature has none
            # (ejabberd without mod_s2s_dialback): asking would only earn a
            # stream error.  A peer that offers neither is an old one.
            raise AuthenticationRefused("; ".join(tried + ["%s does not offer dialback"
                                                          % (pair[1],)]))
        if not stream.usable:
            raise AuthenticationRefused("; ".join(tried + ["the stream closed"]))
        d = self.server.dialback.originate(stream, pair[0], pair[1])

        def done(_):
            self._authenticated(stream, pair, METHOD_DIALBACK)
            return METHOD_DIALBACK

        def failed(reason):
            refused = isinstance(reason.value, db.DialbackFailed)
            if refused:
                self.server.count_failure("dialback")
            elif stream.peer_error in ("not-authorized", "policy-violation"):
                # ejabberd answers a db:result it has no module for so.
                refused = True
                tried.append("dialback: %s sent the stream error <%s/>"
                             % (pair[1], stream.peer_error))
            if refused:
                if isinstance(reason.value, db.DialbackFailed):
                    tried.append(str(reason.value))
                raise AuthenticationRefused("; ".join(tried))
            return reason
        return d.addCallbacks(done, failed)

    def _refused(self, reason, stream, pair, tried):
        if isinstance(reason.value, AuthenticationRefused):
            # A pair multiplexed onto another pair's stream tries a stream of
            # its own next (server.py): only the stream's own pair is news.
            emit = log.warn if pair == (stream.local, stream.remote) else log.info
            emit("outgoing S2S stream {peer}: {remote} accepted neither SASL EXTERNAL "
                 "nor dialback from {local}: {why}", peer=stream.peer, local=pair[0],
                 remote=pair[1], why=reason.value)
        return reason

    def _authenticated(self, stream, pair, method):
        _record_method(stream, pair, method)
        log.info("outgoing S2S stream {peer}: {local} -> {remote} authenticated by {method} "
                 "over {tls}", peer=stream.peer, local=pair[0], remote=pair[1], method=method,
                 tls=_tls_kind(stream))

    def _external(self, stream, local, remote):
        """Send ``<auth mechanism='EXTERNAL'>``; the Deferred fires after the restart."""
        state = self._state(stream)
        state["tried"] = True
        waiters = state["waiting"] = db.Waiters()
        auth = _sasl_element("auth", text=encode_authzid(local))
        auth["mechanism"] = EXTERNAL
        stream.send(auth)
        d = waiters.wait()

        def done(_):
            self._authenticated(stream, (local, remote), METHOD_EXTERNAL)
            return METHOD_EXTERNAL
        return d.addCallback(done)

    def answered(self, stream, element):
        """``<success/>`` or ``<failure/>`` (or a challenge) on a stream we opened."""
        state = self._state(stream)
        waiters = state.get("waiting")
        if waiters is None or state.get("restarting"):
            log.info("outgoing S2S stream {peer}: ignoring an unrequested <{name}/> "
                     "(SASL)", peer=stream.peer, name=element.name)
            return
        if element.name == "success":
            # RFC 6120 6.4.6: discard the old stream, open a new one; the
            # pair is authenticated once its features arrive.
            state["restarting"] = True
            xs = stream.xmlstream
            xs.reset()
            xs.sendHeader()
        elif element.name == "failure":
            state.pop("waiting", None)
            condition, text = _failure_condition(element)
            self.server.count_failure("sasl")
            waiters.fail(SASLFailed(condition, text))
        elif element.name == "challenge":
            # EXTERNAL has no challenges: the peer wants something we have not.
            stream.send(_sasl_element("abort"))
        else:
            log.info("outgoing S2S stream {peer}: ignoring <{name} xmlns='{uri}'/>",
                     peer=stream.peer, name=element.name, uri=NS_SASL)

    def features_after_restart(self, stream, features):
        """
        The features of the stream restarted after our ``<success/>``: the
        header's pair is authenticated now.  True when these features were
        that restart's (the stream's negotiation is over already).
        """
        state = self._state(stream)
        if not state.get("restarting"):
            return False
        state["restarting"] = False
        waiters = state.pop("waiting", None)
        state["done"] = True
        stream.mark_authenticated((stream.local, stream.remote))
        if waiters is not None:
            waiters.fire(None)
        return True

    def lost(self, stream, reason):
        """The stream closed while EXTERNAL was under way."""
        waiters = self._state(stream).pop("waiting", None)
        if waiters is not None:
            waiters.fail(reason)
