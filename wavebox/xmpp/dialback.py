"""
Server Dialback (XEP-0220), with keys made as XEP-0185 recommends.

Dialback lets a Receiving Server check that a stream really comes from the
domain it claims, by asking that domain's Authoritative Server (found through
DNS) whether the key it was given is genuine.  Each server plays three roles,
and each role answers one dialback element; the methods of :class:`Dialback`
are named for them and read like XEP-0220 section 2:

=======================  ===========================  =====================================
role                     element it handles           method
=======================  ===========================  =====================================
Originating Server       sends ``<db:result>KEY``     :meth:`Dialback.originate`
Receiving Server         gets ``<db:result>KEY``      :meth:`Dialback.receive_result`
Receiving Server         sends ``<db:verify>KEY``     :meth:`Dialback.ask_authoritative`
Authoritative Server     gets ``<db:verify>KEY``      :meth:`Dialback.answer_verify`
Receiving Server         gets ``<db:verify type>``    :meth:`Dialback.verify_answered`
Originating Server       gets ``<db:result type>``    :meth:`Dialback.result_answered`
=======================  ===========================  =====================================

Session bookkeeping (which domain pairs a stream carries, what it waits for)
lives on the stream objects of :mod:`wavebox.xmpp.streams`, which also mark
a pair authenticated when this module says so; reaching the Authoritative
Server is the stream manager's job.  Nothing here ever blocks
one stream on another: the Authoritative answer is computed from the key
alone (XEP-0185), and every wait is a Deferred.  Prosody holds its own
``db:verify`` for our key until it has verified *its* key with us, so any
design that waits for our stream to be authenticated before verifying the
peer's key would deadlock.

When the peer's TLS certificate already proves the domain it claims (a
chain we trust naming that domain), the Receiving Server answers
``db:result`` with ``type='valid'`` at once, without the verify round trip:
"dialback without dialback", XEP-0344 section 2.4.
"""

import hashlib
import hmac
import os
import secrets

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import failure
from twisted.words.protocols.jabber import error, jid
from twisted.words.xish import domish

NS_DIALBACK = "jabber:server:dialback"
NS_DIALBACK_FEATURE = "urn:xmpp:features:dialback"

SECRET_FILE = "dialback.secret"

log = Logger()


# --- XEP-0185: keys ----------------------------------------------------------

def dialback_key(secret, receiving, originating, stream_id):
    """
    The dialback key of XEP-0185 section 2:
    HMAC-SHA256(SHA256(secret), "Receiving Originating StreamID"), in hex.

    The key binds the two domains and the stream id, so it cannot be replayed
    on another stream (after STARTTLS the stream id changes).  The hex digest
    of the secret is the HMAC key, as the XEP's test vector requires.
    """
    hashed = hashlib.sha256(secret.encode("utf-8")).hexdigest().encode("ascii")
    message = " ".join((receiving, originating, stream_id)).encode("utf-8")
    return hmac.new(hashed, message, hashlib.sha256).hexdigest()


def key_is_valid(secret, receiving, originating, stream_id, key):
    expected = dialback_key(secret, receiving, originating, stream_id)
    return hmac.compare_digest(expected.encode("ascii"), key.strip().encode("utf-8"))


def load_secret(data_dir):
    """
    The dialback secret kept in the data directory, made on first use.

    Keys are checked by recomputing them, so the secret must survive restarts
    (a key handed out just before a restart is still verified after it) and
    must be the same for every process that answers for the domain.  Only the
    owner may read it.
    """
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    path = os.path.join(data_dir, SECRET_FILE)
    try:
        with open(path, encoding="ascii") as f:
            secret = f.read().strip()
        if secret:
            return secret
    except FileNotFoundError:
        pass
    secret = secrets.token_hex(32)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secret + "\n")
    os.replace(path + ".tmp", path)
    return secret


def secret_from_config(config):
    return config.dialback_secret or load_secret(config.data_dir)


# --- elements ----------------------------------------------------------------

class DialbackFailed(Exception):
    """The peer answered a dialback request with ``invalid`` or ``error``."""

    def __init__(self, answer, condition=None, text=None, peer=None):
        Exception.__init__(self, answer, condition)
        self.answer = answer
        self.condition = condition
        self.text = text
        self.peer = peer

    def __str__(self):
        text = "dialback %s" % (self.answer,)
        if self.condition:
            text += " (%s)" % (self.condition,)
        if self.answer != "error":
            return text
        who = self.peer or "the peer"
        if self.text:
            # A wavebox peer (and Prosody) says why in the error's <text/>.
            return text + ": %s could not verify our key; it says: %s" % (who, self.text)
        # Nothing more is said: name what it most often is, and what shows it
        # from our side, rather than the peer's log, which we cannot read.
        return text + (": %s could not verify our key: to check it, it connects back to us, "
                       "so most often it does not trust our certificate's CA or cannot reach "
                       "us where our DNS points ('wavebox check --self' shows what peers "
                       "see)" % (who,))


#: The most of a reason we put in a dialback error's <text/>.
ERROR_TEXT_LIMIT = 300


def _element(name, sender, recipient, stream_id=None, key=None, answer=None):
    element = domish.Element((NS_DIALBACK, name))
    element["from"] = sender
    element["to"] = recipient
    if stream_id is not None:
        element["id"] = stream_id
    if answer is not None:
        element["type"] = answer
    if key:
        element.addContent(key)
    return element


def _error_element(name, sender, recipient, condition, error_type="cancel", stream_id=None,
                   text=None):
    """
    A dialback error (XEP-0220 section 2.4): a stanza error inside the
    element, with our reason as its ``<text/>`` so that the other side's
    operator can read it in their own log.
    """
    element = _element(name, sender, recipient, stream_id=stream_id, answer="error")
    err = element.addElement("error")
    err["type"] = error_type
    err.addElement((error.NS_XMPP_STANZAS, condition))
    if text:
        err.addElement((error.NS_XMPP_STANZAS, "text"), content=text[:ERROR_TEXT_LIMIT])
    return element


def _error_details(element):
    """``(condition, text)`` of a dialback error; either may be None."""
    condition = text = None
    for child in element.elements():
        if child.name == "error":
            for part in child.elements():
                if part.uri != error.NS_XMPP_STANZAS:
                    continue
                if part.name == "text":
                    text = str(part)[:ERROR_TEXT_LIMIT].strip() or None
                elif condition is None:
                    condition = part.name
    return condition, text


def _domain(value):
    """A bare domain from an attribute, or None when it is not one."""
    if not value:
        return None
    try:
        parsed = jid.internJID(value)
    except jid.InvalidFormat:
        return None
    if parsed.user or parsed.resource:
        return None
    return parsed.host


class Waiters:
    """
    One outcome that several callers wait for (the same domain pair claimed
    twice, the same key verified for two streams, a stream's negotiation).
    Callers that come after the outcome get it at once.
    """

    def __init__(self):
        self._waiting = []
        self.done = False
        self._result = None
        self._failure = None

    def wait(self):
        if self.done:
            if self._failure is not None:
                return defer.fail(self._failure)
            return defer.succeed(self._result)
        d = defer.Deferred()
        self._waiting.append(d)
        return d

    def fire(self, result):
        if self.done:
            return
        self.done, self._result = True, result
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(result)

    def fail(self, reason):
        if self.done:
            return
        if not isinstance(reason, failure.Failure):
            reason = failure.Failure(reason)
        self.done, self._failure = True, reason
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(reason)


# --- the three roles -----------------------------------------------------------

class Dialback:
    """
    XEP-0220 for one server.

    ``server`` is the stream manager; dialback asks it only three things:
    ``is_local(domain)``, ``tls_required`` and
    ``verify_with_authoritative(receiving, originating, stream_id, key)``
    (reach the Authoritative Server over any negotiated stream, send the
    ``db:verify`` with :meth:`ask_authoritative`, return its Deferred).

    A stream (see :mod:`wavebox.xmpp.streams`) offers ``sid``, ``send``,
    ``fail(condition, text)``, ``tls_active``, ``peer_proves(domain)``,
    ``mark_authenticated(pair)``, ``answered_a_verify()`` and the sets/dicts
    ``authenticated``, ``verifying``, ``pending_results``, ``pending_verifies``.
    """

    def __init__(self, secret, server, trust_certificates=True):
        if not isinstance(secret, str) or not secret:
            raise ValueError("the dialback secret must be a non-empty str")
        self._secret = secret
        self.server = server
        self.trust_certificates = trust_certificates

    def _tls_missing(self, stream, what):
        """RFC 6120 5.3.1 / XEP-0220 2.1: no dialback before TLS when TLS is required."""
        if self.server.tls_required and not stream.tls_active:
            stream.fail("policy-violation", "%s before STARTTLS" % (what,))
            return True
        return False

    # Originating Server -----------------------------------------------------

    def originate(self, stream, originating, receiving):
        """
        Claim ``originating`` towards ``receiving`` on our outgoing stream
        (XEP-0220 2.1.1): send ``<db:result>`` with the key bound to this
        stream's id.  Fires when the Receiving Server says ``valid``; fails
        with :class:`DialbackFailed` otherwise.  Several domain pairs may be
        claimed on one stream (XEP-0220 section 2.6, multiplexing).
        """
        pair = (originating, receiving)
        if pair in stream.authenticated:
            return defer.succeed(pair)
        waiters = stream.pending_results.get(pair)
        if waiters is None:
            waiters = stream.pending_results[pair] = Waiters()
            key = dialback_key(self._secret, receiving, originating, stream.sid or "")
            stream.send(_element("result", originating, receiving, key=key))
        return waiters.wait()

    def result_answered(self, stream, result):
        """The Receiving Server's verdict on our claim (XEP-0220 2.1.4)."""
        pair = (result.getAttribute("to"), result.getAttribute("from"))
        waiters = stream.pending_results.pop(pair, None)
        if waiters is None:
            log.info("dialback: ignoring an unrequested db:result from {peer}",
                     peer=result.getAttribute("from"))
            return
        answer = result.getAttribute("type")
        if answer == "valid":
            stream.mark_authenticated(pair)
            # The stream's own line (wavebox.xmpp.sasl) names the method.
            log.debug("dialback: {originating} -> {receiving} authenticated (our stream)",
                     originating=pair[0], receiving=pair[1])
            waiters.fire(pair)
        else:
            waiters.fail(DialbackFailed(answer, *_error_details(result), peer=pair[1]))

    # Receiving Server -------------------------------------------------------

    def receive_result(self, stream, result):
        """
        An Originating Server claims a domain on a stream it opened to us
        (XEP-0220 2.1.2).  Answer ``valid`` at once if its TLS certificate
        proves the domain (XEP-0344 2.4); otherwise ask that domain's
        Authoritative Server and answer when it has spoken.
        """
        if self._tls_missing(stream, "db:result"):
            return
        originating = _domain(result.getAttribute("from"))
        receiving = result.getAttribute("to")
        key = str(result).strip()
        if originating is None:
            stream.fail("invalid-from", "db:result from %r" % (result.getAttribute("from"),))
            return
        if not self.server.is_local(receiving):
            stream.send(_error_element("result", receiving or "", originating, "item-not-found"))
            return
        pair = (originating, receiving)
        if pair in stream.authenticated:
            stream.send(_element("result", receiving, originating, answer="valid"))
            return
        if pair in stream.verifying:
            return
        if not key:
            stream.send(_error_element("result", receiving, originating, "bad-request", "modify"))
            return
        if self.trust_certificates and stream.peer_proves(originating):
            log.info("dialback: {originating} -> {receiving} accepted: its certificate "
                     "proves {originating} (no verify needed)",
                     originating=originating, receiving=receiving)
            self._accept(stream, pair)
            return
        stream.verifying.add(pair)
        d = self.server.verify_with_authoritative(receiving, originating, stream.sid, key)
        d.addCallbacks(self._authoritative_said, self._authoritative_unreachable,
                       callbackArgs=(stream, pair), errbackArgs=(stream, pair))

    def _accept(self, stream, pair):
        stream.mark_authenticated(pair)
        stream.send(_element("result", pair[1], pair[0], answer="valid"))
        stream.authenticated_changed()

    def _authoritative_said(self, valid, stream, pair):
        stream.verifying.discard(pair)
        if not stream.connected:
            return
        if valid:
            log.info("dialback: {originating} -> {receiving} verified by its "
                     "Authoritative Server", originating=pair[0], receiving=pair[1])
            self._accept(stream, pair)
        else:
            log.warn("dialback: Authoritative Server says the key of {originating} "
                     "-> {receiving} is invalid", originating=pair[0], receiving=pair[1])
            self.server.count_failure("dialback")
            stream.send(_element("result", pair[1], pair[0], answer="invalid"))

    def _authoritative_unreachable(self, reason, stream, pair):
        stream.verifying.discard(pair)
        condition = getattr(reason.value, "condition", None)
        if condition not in ("remote-server-not-found", "remote-server-timeout"):
            condition = "remote-server-timeout"
        log.warn("dialback: cannot verify {originating} -> {receiving}: {reason}",
                 originating=pair[0], receiving=pair[1], reason=reason.getErrorMessage())
        self.server.count_failure("dialback")
        if stream.connected:
            stream.send(_error_element("result", pair[1], pair[0], condition,
                                       "cancel" if condition.endswith("found") else "wait",
                                       text="cannot verify %s -> %s: %s" % (
                                           pair[0], pair[1], reason.getErrorMessage())))

    def ask_authoritative(self, stream, receiving, originating, stream_id, key):
        """
        Send ``<db:verify>`` to the Authoritative Server over ``stream``, any
        negotiated stream to it, authenticated or not (XEP-0220 2.1.3).  Fires
        with True (valid) or False (invalid); fails with
        :class:`DialbackFailed` on a dialback error.
        """
        question = (originating, receiving, stream_id)
        waiters = stream.pending_verifies.get(question)
        if waiters is None:
            waiters = stream.pending_verifies[question] = Waiters()
            stream.send(_element("verify", receiving, originating, stream_id=stream_id, key=key))
        return waiters.wait()

    def verify_answered(self, stream, verify):
        """The Authoritative Server's answer to our ``db:verify`` (XEP-0220 2.1.4)."""
        question = (verify.getAttribute("from"), verify.getAttribute("to"),
                    verify.getAttribute("id"))
        waiters = stream.pending_verifies.pop(question, None)
        if waiters is None:
            log.info("dialback: ignoring an unrequested db:verify answer from {peer}",
                     peer=verify.getAttribute("from"))
            return
        answer = verify.getAttribute("type")
        if answer in ("valid", "invalid"):
            waiters.fire(answer == "valid")
        else:
            waiters.fail(DialbackFailed(answer, *_error_details(verify),
                                        peer=verify.getAttribute("from")))

    # Authoritative Server ---------------------------------------------------

    def answer_verify(self, stream, verify):
        """
        A Receiving Server asks whether a key we handed out is genuine
        (XEP-0220 2.1.3).  Recompute it from the secret (XEP-0185): no state,
        no waiting, so this can never take part in a deadlock.
        """
        if self._tls_missing(stream, "db:verify"):
            return
        receiving = verify.getAttribute("from")
        originating = verify.getAttribute("to")
        stream_id = verify.getAttribute("id")
        if not receiving or stream_id is None:
            stream.send(_error_element("verify", originating or "", receiving or "",
                                       "bad-request", "modify", stream_id=stream_id or ""))
            return
        if not self.server.is_local(originating):
            stream.send(_error_element("verify", originating or "", receiving,
                                       "item-not-found", stream_id=stream_id))
            return
        valid = key_is_valid(self._secret, receiving, originating, stream_id, str(verify))
        stream.answered_a_verify()
        stream.send(_element("verify", originating, receiving, stream_id=stream_id,
                             answer="valid" if valid else "invalid"))
