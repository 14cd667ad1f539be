"""
The stanzas of the Wave federation protocol over XMPP (wave protocol notes §1,
§8.3): wavelet updates and their receipts, submit, history, signer get/post,
the FedOne ping and stanza errors, exactly as FedOne and Wave in a Box put
them on the wire.

Each payload is a small frozen data class holding plain values (ints, str,
the raw bytes that were base64 in the XML).  ``build_*`` functions make the
whole ``<message>``/``<iq>`` element; ``parse_*`` functions take one and
return the payload or raise :class:`MalformedStanza`, which answers as
``bad-request`` with a text saying what is wrong.

Wire facts this module pins (they are why the code looks the way it does):

* payload elements are in the waveserver namespace and their children inherit
  it; ``publish``/``items``/``item`` are in the pubsub namespace (pubsub#event
  inside an update ``<event>``);
* a wavelet update carries at most one ``<wavelet-update>`` per ``<item>``
  (a WIAB receiver reads only the first); we accept several;
* its ``<commit-notice>`` always carries ``history-hash`` (WIAB requires it);
  the one in a history response carries only ``version``;
* ``delta-history`` and ``signer-request`` sit directly under ``<items>``
  (no ``<item>``); so does the ``<signature>`` of a signer get response;
  the signer post response has ``node="signer"`` on its ``<item>``;
* errors do not echo the payload (§1.8).

Only twisted.words, base64 and the namespaces the XMPP layer owns (the
wave service's, ``wavebox.xmpp.disco``; XEP-0184 receipts, ``wavebox.xmpp.ping``):
no wave model here.
"""

import base64
import binascii
import re
from dataclasses import dataclass, field

from twisted.words.protocols.jabber.error import NS_XMPP_STANZAS as NS_STANZAS
from twisted.words.protocols.jabber.error import STANZA_CONDITIONS, StanzaError
from twisted.words.xish import domish

from wavebox.xmpp.disco import NS_WAVE_SERVER as NS_WAVE
from wavebox.xmpp.ping import NS_RECEIPTS

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_XML = "http://www.w3.org/XML/1998/namespace"

NODE_WAVELET = "wavelet"
NODE_SIGNER = "signer"

SIGNER_ALGORITHMS = ("SHA256", "SHA512")

# FederationError.Code (federation_error.protodevel) on the wire (§1.8).
FEDERATION_CONDITIONS = (
    "bad-request", "item-not-found", "not-acceptable", "not-authorized",
    "resource-constraint", "undefined-condition", "remote-server-timeout",
    "unexpected-request", "internal-server-error",
)

_INT64_MAX = 2 ** 63 - 1
_DECIMAL = re.compile(r"-?[0-9]+\Z")


# --- errors -----------------------------------------------------------------

#: Our application-specific error conditions (RFC 6120 8.3.4), beside the
#: defined one: the wave protocol has no condition of its own for them.
NS_WAVEBOX_ERRORS = "urn:x-wavebox:federation:errors"
UNKNOWN_SIGNER = "unknown-signer"


class FederationError(StanzaError):
    """
    A federation request failed with a stanza error condition (§1.8).  Raised
    by parsers and handlers, turned into the error reply by
    :func:`build_error_reply`; also what a failed request to a peer gives.
    ``application`` is an application-specific condition of ours
    (:data:`NS_WAVEBOX_ERRORS`), or None.
    """

    def __init__(self, condition, text=None, type=None, application=None):
        StanzaError.__init__(self, condition, type=type, text=text,
                             textLang="en" if text else None)
        self.application = application

    @property
    def unknown_signer(self):
        """
        The host does not know the signer of our delta, so posting our signer
        info again may help.  A wavebox host says so with its application
        condition; Wave in a Box (``internal-server-error``) and FedOne
        (``bad-request``) only in the text, which is read here, once, for them.
        """
        if self.application is not None:
            return self.application == UNKNOWN_SIGNER
        return self.condition in ("internal-server-error", "bad-request") and \
            "signer" in (self.text or "").lower()

    @property
    def federation_code(self):
        """The ``FederationError.Code`` name; unknown conditions are UNDEFINED_CONDITION."""
        if self.condition in FEDERATION_CONDITIONS:
            return self.condition.upper().replace("-", "_")
        return "UNDEFINED_CONDITION"


class MalformedStanza(FederationError):
    """A stanza does not have the shape §1 prescribes: always ``bad-request``."""

    def __init__(self, text):
        FederationError.__init__(self, "bad-request", text)


def build_error_reply(stanza, error):
    """
    The error reply to ``stanza``: same id, to/from swapped, ``type="error"``,
    and without the original payload (WIAB does not echo it).
    """
    reply = _reply(stanza, "error")
    err = reply.addElement("error")
    err["type"] = error.type or STANZA_CONDITIONS.get(
        error.condition, {}).get("type", "cancel")
    err.addElement((NS_STANZAS, error.condition))
    if getattr(error, "application", None):
        err.addElement((NS_WAVEBOX_ERRORS, error.application))
    if error.text:
        text = err.addElement((NS_STANZAS, "text"), content=error.text)
        text[(NS_XML, "lang")] = error.textLang or "en"
    return reply


def parse_error(stanza):
    """The :class:`FederationError` carried by a ``type="error"`` stanza."""
    condition, text, etype, application = None, None, None, None
    for err in _children(stanza, "error"):
        etype = err.getAttribute("type")
        for child in err.elements():
            if child.uri == NS_WAVEBOX_ERRORS:
                application = child.name
            if child.uri != NS_STANZAS:
                continue
            if child.name == "text":
                text = _text(child)
            elif condition is None:
                condition = child.name
        break
    return FederationError(condition or "undefined-condition", text, type=etype,
                           application=application)


# --- payloads ---------------------------------------------------------------

@dataclass(frozen=True)
class CommitNotice:
    """The host has the wavelet durable up to ``version`` (hash: §1.3)."""
    version: int
    history_hash: bytes = None


@dataclass(frozen=True)
class WaveletUpdate:
    """One ``<wavelet-update>``: serialized ProtocolAppliedWaveletDeltas, in order."""
    wavelet_name: str
    applied_deltas: tuple = ()
    commit_notice: CommitNotice = None


@dataclass(frozen=True)
class SubmitRequest:
    """``signed_delta`` is a serialized ProtocolSignedDelta, exactly as received."""
    wavelet_name: str
    signed_delta: bytes


@dataclass(frozen=True)
class SubmitResponse:
    """The wavelet's hashed version after the submitted delta was applied."""
    operations_applied: int
    application_timestamp: int
    version: int
    history_hash: bytes
    error_message: str = None


@dataclass(frozen=True)
class HistoryRequest:
    """Deltas in [start, end): both ends must be delta boundaries with those hashes."""
    wavelet_name: str
    start_version: int
    start_hash: bytes
    end_version: int
    end_hash: bytes
    length_limit: int = None


@dataclass(frozen=True)
class HistoryResponse:
    applied_deltas: tuple = ()
    commit_notice_version: int = None
    truncated_version: int = None


@dataclass(frozen=True)
class SignerRequest:
    """Ask for the chain of ``signer_id``, who signed the delta ending at ``version``."""
    wavelet_name: str
    signer_id: bytes
    version: int
    history_hash: bytes


@dataclass(frozen=True)
class SignerInfoPayload:
    """A ``<signature>`` element: a ProtocolSignerInfo; DER certificates, leaf first."""
    domain: str
    algorithm: str
    certificates: tuple = field(default_factory=tuple)


# --- small helpers ----------------------------------------------------------

def b64encode(data):
    """Standard alphabet, padded, no line breaks (commons-codec encodeBase64)."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text, what):
    """Lenient as Java: whitespace ignored, padding optional; anything else is bad-request."""
    compact = "".join(text.split())
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise MalformedStanza("%s is not base64" % (what,))


def _text(element):
    # expat may split character data into several nodes: join them all.
    return "".join(c for c in element.children if isinstance(c, str))


def _children(element, name, uri=None):
    uri = element.uri if uri is None else uri
    return [c for c in element.elements() if c.name == name and c.uri == uri]


def _child(element, name, uri, what):
    found = _children(element, name, uri)
    if not found:
        raise MalformedStanza("missing <%s> in %s" % (name, what))
    return found[0]


def _attr(element, name, what):
    value = element.getAttribute(name)
    if value is None:
        raise MalformedStanza("missing %s attribute on <%s> (%s)" % (name, element.name, what))
    return value


def _int(text, name, minimum=0, maximum=_INT64_MAX):
    text = text.strip()
    if not _DECIMAL.match(text):
        raise MalformedStanza("%s is not a decimal number: %r" % (name, text[:40]))
    value = int(text)
    if not minimum <= value <= maximum:
        raise MalformedStanza("%s out of range: %s" % (name, text[:40]))
    return value


def _int_attr(element, name, what, minimum=0, maximum=_INT64_MAX):
    return _int(_attr(element, name, what), name, minimum, maximum)


def _b64_attr(element, name, what):
    return b64decode(_attr(element, name, what), name)


def _b64_text(element, what):
    text = _text(element)
    if not text.strip():
        raise MalformedStanza("empty <%s> in %s" % (element.name, what))
    return b64decode(text, "<%s>" % (element.name,))


def _stanza(name, from_jid, to_jid, stanza_id, stanza_type):
    el = domish.Element((None, name))
    if stanza_type:
        el["type"] = stanza_type
    el["id"] = stanza_id
    el["from"] = from_jid
    el["to"] = to_jid
    return el


def _reply(stanza, stanza_type=None):
    """Same id, to/from swapped exactly (a reply that does not mirror times out, §1.2)."""
    reply = domish.Element((None, stanza.name))
    if stanza_type:
        reply["type"] = stanza_type
    if stanza.getAttribute("id") is not None:
        reply["id"] = stanza["id"]
    if stanza.getAttribute("to") is not None:
        reply["from"] = stanza["to"]
    if stanza.getAttribute("from") is not None:
        reply["to"] = stanza["from"]
    return reply


def _pubsub(iq, uri=NS_PUBSUB):
    return iq.addElement((uri, "pubsub"))


def _require_iq(iq, types, what):
    if iq.name != "iq" or iq.getAttribute("type") not in types:
        raise MalformedStanza("%s must be an iq of type %s" % (what, "/".join(types)))


def _pubsub_child(iq, name, what):
    """The ``<publish>`` or ``<items>`` under the iq's ``<pubsub>``."""
    pubsub = _child(iq, "pubsub", NS_PUBSUB, what)
    return _child(pubsub, name, NS_PUBSUB, what)


# Every request is an iq set carrying <pubsub><publish node=...><item>, or an
# iq get carrying <pubsub><items node=...>; its result has the same shape
# without the node (§1.2).  These build and find those shells.

def _publish_request(from_jid, to_jid, stanza_id, node):
    """An iq set with ``<pubsub><publish node=...>``; returns (iq, its ``<item>``)."""
    iq = _stanza("iq", from_jid, to_jid, stanza_id, "set")
    publish = _pubsub(iq).addElement("publish")
    publish["node"] = node
    return iq, publish.addElement("item")


def _items_request(from_jid, to_jid, stanza_id, node):
    """An iq get with ``<pubsub><items node=...>``; returns (iq, ``<items>``)."""
    iq = _stanza("iq", from_jid, to_jid, stanza_id, "get")
    items = _pubsub(iq).addElement("items")
    items["node"] = node
    return iq, items


def _publish_result(request_iq):
    """The result of a publish request; returns (iq, its ``<publish><item>``)."""
    iq = _reply(request_iq, "result")
    return iq, _pubsub(iq).addElement("publish").addElement("item")


def _items_result(request_iq):
    """The result of an items request; returns (iq, its ``<items>``)."""
    iq = _reply(request_iq, "result")
    return iq, _pubsub(iq).addElement("items")


def _published_item(iq, stanza_type, what):
    """The ``<item>`` under ``<pubsub><publish>`` of an iq of ``stanza_type``."""
    _require_iq(iq, (stanza_type,), what)
    publish = _pubsub_child(iq, "publish", what)
    return _child(publish, "item", NS_PUBSUB, what)


def _pubsub_items(iq, stanza_type, what):
    """The ``<items>`` under ``<pubsub>`` of an iq of ``stanza_type``."""
    _require_iq(iq, (stanza_type,), what)
    return _pubsub_child(iq, "items", what)


def _signature_element(parent, info):
    sig = parent.addElement((NS_WAVE, "signature"))
    sig["domain"] = info.domain
    sig["algorithm"] = info.algorithm
    for der in info.certificates:
        sig.addElement("certificate", content=b64encode(der))
    return sig


def _parse_signature(sig, what):
    domain = _attr(sig, "domain", what).strip()
    if not domain:
        raise MalformedStanza("empty domain on <signature> (%s)" % (what,))
    algorithm = _attr(sig, "algorithm", what).strip().upper()
    if algorithm not in SIGNER_ALGORITHMS:
        raise MalformedStanza("Could not understand signer algorithm %r" % (algorithm[:20],))
    certs = tuple(_b64_text(c, what) for c in _children(sig, "certificate", NS_WAVE))
    if not certs:
        raise MalformedStanza("no <certificate> in <signature> (%s)" % (what,))
    return SignerInfoPayload(domain, algorithm, certs)


def _wavelet_name_attr(element, what):
    name = _attr(element, "wavelet-name", what).strip()
    if not name:
        raise MalformedStanza("empty wavelet-name (%s)" % (what,))
    return name


# --- dispatch (§1.2) --------------------------------------------------------

SUBMIT, HISTORY, SIGNER_GET, SIGNER_POST = "submit", "history", "signer-get", "signer-post"
UPDATE, PING, RECEIPT, ERROR = "update", "ping", "receipt", "error"


def classify_iq(iq):
    """
    Which federation request an incoming iq get/set is (WIAB
    ``processIqGetSet``): pubsub ``publish`` for set, ``items`` for get, routed
    by its ``node``.  Anything else is ``bad-request``.
    """
    stype = iq.getAttribute("type")
    pubsubs = _children(iq, "pubsub", NS_PUBSUB)
    if stype not in ("get", "set") or not pubsubs:
        raise MalformedStanza("not a wave federation request")
    inner = _children(pubsubs[0], "publish" if stype == "set" else "items", NS_PUBSUB)
    if not inner:
        raise MalformedStanza("pubsub %s without <%s>" % (
            stype, "publish" if stype == "set" else "items"))
    node = inner[0].getAttribute("node")
    if node == NODE_WAVELET:
        return SUBMIT if stype == "set" else HISTORY
    if node == NODE_SIGNER:
        return SIGNER_POST if stype == "set" else SIGNER_GET
    raise MalformedStanza("unknown pubsub node %r" % ((node or "")[:40],))


def classify_message(message):
    """
    What an incoming message is: an ``error`` or a ``receipt`` answers one of
    ours, an ``update`` carries a pubsub#event, a ``ping`` wants a receipt.
    """
    if message.getAttribute("type") == "error":
        return ERROR
    if _children(message, "received", NS_RECEIPTS):
        return RECEIPT
    if _children(message, "event", NS_PUBSUB_EVENT):
        return UPDATE
    if _children(message, "ping", NS_WAVE):
        return PING
    raise MalformedStanza("not a wave federation message")


def wants_receipt(message):
    return bool(_children(message, "request", NS_RECEIPTS))


# --- wavelet update and receipt (§1.3) --------------------------------------

def wavelet_update_element(update):
    """One ``<wavelet-update>`` (what the outbox stores), in the waveserver namespace."""
    wu = domish.Element((NS_WAVE, "wavelet-update"))
    wu["wavelet-name"] = update.wavelet_name
    for delta in update.applied_deltas:
        wu.addElement("applied-delta", content=b64encode(delta))
    if update.commit_notice is not None:
        cn = wu.addElement("commit-notice")
        cn["version"] = str(update.commit_notice.version)
        if update.commit_notice.history_hash is None:
            raise ValueError("a commit notice in an update needs its history hash")
        cn["history-hash"] = b64encode(update.commit_notice.history_hash)
    return wu


def build_update_message(from_jid, to_jid, stanza_id, updates, request_receipt=True):
    """
    A ``<message type="normal">`` pushing ``updates`` (WaveletUpdate objects or
    ready ``<wavelet-update>`` elements), one ``<item>`` each.
    """
    msg = _stanza("message", from_jid, to_jid, stanza_id, "normal")
    if request_receipt:
        msg.addElement((NS_RECEIPTS, "request"))
    items = msg.addElement((NS_PUBSUB_EVENT, "event")).addElement("items")
    for update in updates:
        item = items.addElement("item")
        if isinstance(update, WaveletUpdate):
            update = wavelet_update_element(update)
        item.addChild(update)
    return msg


def parse_wavelet_update(wu):
    what = "wavelet-update"
    name = _wavelet_name_attr(wu, what)
    deltas = tuple(_b64_text(d, what) for d in _children(wu, "applied-delta", NS_WAVE))
    notice = None
    notices = _children(wu, "commit-notice", NS_WAVE)
    if notices:
        cn = notices[0]
        notice = CommitNotice(_int_attr(cn, "version", what),
                              _b64_attr(cn, "history-hash", what))
    if not deltas and notice is None:
        raise MalformedStanza("wavelet-update without applied-delta or commit-notice")
    return WaveletUpdate(name, deltas, notice)


def parse_update_message(message):
    """Every wavelet update of the message, in document order."""
    what = "wavelet update"
    event = _child(message, "event", NS_PUBSUB_EVENT, what)
    items = _child(event, "items", NS_PUBSUB_EVENT, what)
    item_list = _children(items, "item", NS_PUBSUB_EVENT)
    if not item_list:
        raise MalformedStanza("no <item> in wavelet update")
    updates = []
    for item in item_list:
        found = _children(item, "wavelet-update", NS_WAVE)
        if not found:
            raise MalformedStanza("<item> without <wavelet-update>")
        updates.extend(parse_wavelet_update(wu) for wu in found)
    return updates


def build_receipt(message):
    """The ``<received/>`` answer: same id, to/from swapped."""
    reply = _reply(message)
    reply.addElement((NS_RECEIPTS, "received"))
    return reply


def build_ping(from_jid, to_jid, stanza_id):
    """The FedOne server ping (§8.3): answered with a receipt."""
    msg = _stanza("message", from_jid, to_jid, stanza_id, "normal")
    msg.addElement((NS_WAVE, "ping"))
    msg.addElement((NS_RECEIPTS, "request"))
    return msg


# --- submit (§1.4) ----------------------------------------------------------

def build_submit_request(from_jid, to_jid, stanza_id, request):
    iq, item = _publish_request(from_jid, to_jid, stanza_id, NODE_WAVELET)
    sr = item.addElement((NS_WAVE, "submit-request"))
    delta = sr.addElement("delta", content=b64encode(request.signed_delta))
    delta["wavelet-name"] = request.wavelet_name
    return iq


def parse_submit_request(iq):
    what = "Malformed submit request"
    item = _published_item(iq, "set", what)
    sr = _child(item, "submit-request", NS_WAVE, what)
    delta = _child(sr, "delta", NS_WAVE, what)
    return SubmitRequest(_wavelet_name_attr(delta, what), _b64_text(delta, what))


def build_submit_response(request_iq, response):
    iq, item = _publish_result(request_iq)
    sr = item.addElement((NS_WAVE, "submit-response"))
    sr["application-timestamp"] = str(response.application_timestamp)
    sr["operations-applied"] = str(response.operations_applied)
    if response.error_message:
        sr["error-message"] = response.error_message
    hv = sr.addElement("hashed-version")
    hv["version"] = str(response.version)
    hv["history-hash"] = b64encode(response.history_hash)
    return iq


def parse_submit_response(iq):
    what = "submit response"
    item = _published_item(iq, "result", what)
    sr = _child(item, "submit-response", NS_WAVE, what)
    hv = _child(sr, "hashed-version", NS_WAVE, what)
    return SubmitResponse(
        operations_applied=_int_attr(sr, "operations-applied", what, maximum=2 ** 31 - 1),
        application_timestamp=_int_attr(sr, "application-timestamp", what,
                                        minimum=-_INT64_MAX),
        version=_int_attr(hv, "version", what),
        history_hash=_b64_attr(hv, "history-hash", what),
        error_message=sr.getAttribute("error-message"))


# --- history (§1.5) ---------------------------------------------------------

def build_history_request(from_jid, to_jid, stanza_id, request):
    iq, items = _items_request(from_jid, to_jid, stanza_id, NODE_WAVELET)
    dh = items.addElement((NS_WAVE, "delta-history"))
    dh["wavelet-name"] = request.wavelet_name
    dh["start-version"] = str(request.start_version)
    dh["start-version-hash"] = b64encode(request.start_hash)
    dh["end-version"] = str(request.end_version)
    dh["end-version-hash"] = b64encode(request.end_hash)
    if request.length_limit is not None and request.length_limit > 0:
        dh["response-length-limit"] = str(request.length_limit)
    return iq


def parse_history_request(iq):
    what = "history request"
    items = _pubsub_items(iq, "get", what)
    dh = _child(items, "delta-history", NS_WAVE, what)
    limit = dh.getAttribute("response-length-limit")
    limit = None if limit is None else _int(limit, "response-length-limit",
                                            minimum=-_INT64_MAX)
    if limit is not None and limit <= 0:
        limit = None
    return HistoryRequest(
        wavelet_name=_wavelet_name_attr(dh, what),
        start_version=_int_attr(dh, "start-version", what),
        start_hash=_b64_attr(dh, "start-version-hash", what),
        end_version=_int_attr(dh, "end-version", what),
        end_hash=_b64_attr(dh, "end-version-hash", what),
        length_limit=limit)


def build_history_response(request_iq, response):
    iq, items = _items_result(request_iq)
    for delta in response.applied_deltas:
        items.addElement("item").addElement(
            (NS_WAVE, "applied-delta"), content=b64encode(delta))
    if response.commit_notice_version is not None:
        cn = items.addElement("item").addElement((NS_WAVE, "commit-notice"))
        cn["version"] = str(response.commit_notice_version)
    if response.truncated_version is not None:
        ht = items.addElement("item").addElement((NS_WAVE, "history-truncated"))
        ht["version"] = str(response.truncated_version)
    return iq


def parse_history_response(iq):
    what = "history response"
    items = _pubsub_items(iq, "result", what)
    deltas, commit, truncated = [], None, None
    for item in _children(items, "item", NS_PUBSUB):
        for child in item.elements():
            if child.uri == NS_WAVE and child.name == "applied-delta":
                deltas.append(_b64_text(child, what))
            elif child.uri == NS_WAVE and child.name == "commit-notice":
                commit = _int_attr(child, "version", what)
            elif child.uri == NS_WAVE and child.name == "history-truncated":
                truncated = _int_attr(child, "version", what)
            else:
                raise MalformedStanza("unexpected <%s> in history response" % (child.name[:40],))
    return HistoryResponse(tuple(deltas), commit, truncated)


# --- signer info get (§1.6) and post (§1.7) ---------------------------------

def build_signer_request(from_jid, to_jid, stanza_id, request):
    iq, items = _items_request(from_jid, to_jid, stanza_id, NODE_SIGNER)
    sr = items.addElement((NS_WAVE, "signer-request"))
    sr["signer-id"] = b64encode(request.signer_id)
    sr["wavelet-name"] = request.wavelet_name
    sr["version"] = str(request.version)
    sr["history-hash"] = b64encode(request.history_hash)
    return iq


def parse_signer_request(iq):
    what = "signer request"
    items = _pubsub_items(iq, "get", what)
    sr = _child(items, "signer-request", NS_WAVE, what)
    return SignerRequest(
        wavelet_name=_wavelet_name_attr(sr, what),
        signer_id=_b64_attr(sr, "signer-id", what),
        version=_int_attr(sr, "version", what),
        history_hash=_b64_attr(sr, "history-hash", what))


def build_signer_response(request_iq, info):
    iq, items = _items_result(request_iq)
    _signature_element(items, info)
    return iq


def parse_signer_response(iq):
    what = "signer response"
    items = _pubsub_items(iq, "result", what)
    sigs = _children(items, "signature", NS_WAVE)
    if not sigs:
        # Tolerate an <item> wrapper, which the SPEC prose suggests.
        for item in _children(items, "item", NS_PUBSUB):
            sigs = _children(item, "signature", NS_WAVE)
            if sigs:
                break
    if not sigs:
        raise MalformedStanza("missing <signature> in %s" % (what,))
    return _parse_signature(sigs[0], what)


def build_signer_post(from_jid, to_jid, stanza_id, info):
    iq, item = _publish_request(from_jid, to_jid, stanza_id, NODE_SIGNER)
    _signature_element(item, info)
    return iq


def parse_signer_post(iq):
    what = "signer post"
    item = _published_item(iq, "set", what)
    return _parse_signature(_child(item, "signature", NS_WAVE, what), what)


def build_signer_post_response(request_iq):
    iq, item = _publish_result(request_iq)
    item["node"] = NODE_SIGNER
    item.addElement((NS_WAVE, "signature-response"))
    return iq


def parse_signer_post_response(iq):
    what = "signer post response"
    item = _published_item(iq, "result", what)
    _child(item, "signature-response", NS_WAVE, what)
    return True


# --- XML text <-> elements (for the durable outbox) -------------------------

def element_from_xml(text):
    """Parse one serialized element (as :meth:`domish.Element.toXml` wrote it)."""
    stream = domish.elementStream()
    found = []
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = found.append
    stream.DocumentEndEvent = lambda: None
    if isinstance(text, str):
        text = text.encode("utf-8")
    try:
        stream.parse(b"<wrapper>" + text + b"</wrapper>")
    except domish.ParserError as e:
        raise MalformedStanza("not XML: %s" % (e,))
    if len(found) != 1:
        raise MalformedStanza("expected one element, found %d" % (len(found),))
    return found[0]
