"""
TLS for server-to-server streams: the contexts STARTTLS (RFC 6120 section 5)
switches to, and the certificate checks of RFC 6125 done with
``service_identity``.

Two directions, two policies:

- **Originating side** (we opened the stream): the peer's certificate must
  chain to a CA we trust (``trusted_ca`` or the system store) and name the
  domain we meant to reach (DNS-ID, RFC 6125).  Otherwise the handshake is
  refused and nothing is sent.  With ``tls_required no`` (tests only) we
  encrypt without checking, and dialback alone authenticates.
- **Receiving side** (the peer opened the stream): we ask for a client
  certificate but never refuse the handshake for it.  We only record whether
  the chain verified; :meth:`TLSPolicy.peer_proves` later tells dialback
  whether that certificate proves a claimed domain (XEP-0344: then no verify
  round trip is needed).  A peer without a usable certificate is
  authenticated by dialback, as XEP-0220 describes.

Either way the chain must pass two checks.  OpenSSL's builds *a* path from
the peer's certificate, taking what it needs from the certificates the peer
sent and ignoring the rest (so ``[leaf, root, another root]`` passes it);
ours (:mod:`wavebox.certpath`, the rule delta signers' chains meet too)
takes the chain as sent as the path: each certificate issued by the next,
the last by a CA we trust, nothing unrelated after it.

Contexts are built once, at start-up, so that a bad key or certificate file
stops the server at once instead of hanging a stream mid-STARTTLS.
"""

import datetime

from OpenSSL import SSL
from service_identity import VerificationError
from service_identity.cryptography import verify_certificate_hostname
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.logger import Logger
from zope.interface import implementer

from wavebox import certpath
from wavebox.xmpp import certs

log = Logger()

# OpenSSL X509_V_ERR_* codes worth naming in a log line; {roots} is where
# our trust roots come from (trusted_ca, or the system store without it).
_VERIFY_ERRORS = {
    # 2 and 18-21 mostly mean that the CA is not one we were told to trust.
    2: "its CA is not in {roots} (issuer certificate not found)",
    7: "bad signature",
    9: "certificate not yet valid",
    10: "certificate expired",
    18: "self-signed certificate, not in {roots}",
    19: "its CA is not in {roots} (self-signed certificate in chain)",
    20: "its CA is not in {roots} (issuer not trusted)",
    21: "its CA is not in {roots} (cannot verify the first certificate)",
    24: "invalid CA certificate",
    26: "unsuitable certificate purpose",
}


class TLSVerdict:
    """
    What one TLS handshake told us about the peer's certificate.

    ``chain_ok`` is None when the peer sent no certificate, else whether its
    chain verified against our trust roots.  ``error`` says why not, for logs.
    """

    def __init__(self):
        self.chain_ok = None
        self.error = None

    def _record(self, ok, errno, depth, roots="trusted_ca"):
        """OpenSSL's verdict on one certificate of the path it built."""
        if not ok:
            self.chain_ok = False
            if self.error is None:
                reason = _VERIFY_ERRORS.get(errno, "certificate not trusted")
                self.error = "%s (OpenSSL error %d at depth %d)" % (
                    reason.format(roots=roots), errno, depth)
        elif self.chain_ok is None:
            self.chain_ok = True

    def _check_sent_chain(self, chain, anchors, roots):
        """
        Ours, once OpenSSL's passed: the chain as the peer sent it (leaf
        first) must itself be one path to ``anchors``.  Returns chain_ok.
        """
        if not self.chain_ok or not chain:
            return self.chain_ok
        try:
            certpath.validate_path(chain, anchors)
        except certpath.PathError as e:
            self.chain_ok = False
            self.error = "the chain it sent is not one path to %s: %s" % (roots, e)
        return self.chain_ok


@implementer(IOpenSSLServerConnectionCreator)
class _ReceivingTLS:
    """
    The receiving side of one STARTTLS: ask for a certificate, never insist.
    The chain the peer sent is only known once the handshake is done (the
    verify callback of a server does not see it), so it is checked then.
    """

    def __init__(self, context, verdict, roots, anchors):
        self._context = context
        self._verdict = verdict
        self._roots = roots
        self._anchors = anchors
        self._done = False

    def serverConnectionForTLS(self, tlsProtocol):
        connection = SSL.Connection(self._context, None)
        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE, self._verify)
        connection.set_info_callback(self._info)
        return connection

    def _verify(self, connection, certificate, errno, depth, ok):
        self._verdict._record(ok, errno, depth, self._roots)
        return True

    def _info(self, connection, where, ret):
        if not where & SSL.SSL_CB_HANDSHAKE_DONE or self._done:
            return
        self._done = True
        try:
            leaf = connection.get_peer_certificate(as_cryptography=True)
            if leaf is None:
                return
            # A server's list of the peer's certificates leaves out the leaf.
            rest = connection.get_peer_cert_chain(as_cryptography=True) or []
            chain = rest if rest and rest[0] == leaf else [leaf] + rest
            self._verdict._check_sent_chain(chain, self._anchors, self._roots)
        except Exception:
            # An exception escaping an OpenSSL callback is lost; log and distrust.
            log.failure("while checking a peer's certificate chain")
            self._verdict.chain_ok = False


@implementer(IOpenSSLClientConnectionCreator)
class _OriginatingTLS:
    """
    The originating side of one STARTTLS: send SNI, present our certificate,
    and (when ``check``) refuse a peer whose chain or name does not verify.
    """

    def __init__(self, context, hostname, verdict, check, roots, anchors, alpn=None):
        self._context = context
        self._hostname = hostname
        self._verdict = verdict
        self._check = check
        self._roots = roots
        self._anchors = anchors
        self._alpn = alpn

    def clientConnectionForTLS(self, tlsProtocol):
        connection = SSL.Connection(self._context, None)
        connection.set_tlsext_host_name(self._hostname.encode("idna"))
        if self._alpn:
            connection.set_alpn_protos(self._alpn)
        mode = SSL.VERIFY_PEER
        if self._check:
            mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
        connection.set_verify(mode, self._verify)
        return connection

    def _verify(self, connection, certificate, errno, depth, ok):
        try:
            self._verdict._record(ok, errno, depth, self._roots)
            if depth == 0 and ok:
                # Depth 0 comes last; a client already holds the whole chain sent.
                ok = self._verdict._check_sent_chain(
                    connection.get_peer_cert_chain(as_cryptography=True),
                    self._anchors, self._roots)
            if depth == 0 and ok:
                try:
                    verify_certificate_hostname(certificate.to_cryptography(), self._hostname)
                except VerificationError as e:
                    self._verdict.chain_ok = False
                    self._verdict.error = "certificate does not name %s (%s)" % (
                        self._hostname, e)
                    ok = False
            return bool(ok) or not self._check
        except Exception:
            # An exception escaping an OpenSSL callback is lost; log and refuse.
            log.failure("while checking the certificate of {host}", host=self._hostname)
            return not self._check


#: XEP-0368: the ALPN protocol of a direct TLS server-to-server connection.
ALPN_XMPP_SERVER = b"xmpp-server"


def _select_alpn(connection, offered):
    """A direct TLS peer asks for xmpp-server; anything else gets no ALPN answer."""
    if ALPN_XMPP_SERVER in offered:
        return ALPN_XMPP_SERVER
    return SSL.NO_OVERLAPPING_PROTOCOLS


def _context(cert_file, key_file, trusted_ca):
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
                        | SSL.OP_NO_TICKET)
    context.use_certificate_chain_file(cert_file.encode("utf-8"))
    context.use_privatekey_file(key_file.encode("utf-8"))
    context.check_privatekey()
    if trusted_ca:
        context.load_verify_locations(trusted_ca.encode("utf-8"))
    else:
        context.set_default_verify_paths()
    # Needed for client certificates on the receiving side (OpenSSL refuses
    # to resume or request without a session id context).
    context.set_session_id(b"wavebox-s2s")
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    return context


class TLSPolicy:
    """
    Our certificate, whom we trust, and whether TLS is required.

    ``cert_file`` holds our certificate chain (leaf first), ``key_file`` its
    private key; both PEM.  ``trusted_ca`` is a PEM file of CA certificates,
    or None for the system store; OpenSSL and our own path check
    (``anchors``) both trust what it holds.
    """

    def __init__(self, cert_file, key_file, trusted_ca=None, required=True):
        self.required = required
        self.cert_file = cert_file
        self.trusted_ca = trusted_ca
        # Named in refusals: an operator who set no trusted_ca must not be
        # sent looking for it.
        self.roots = "trusted_ca" if trusted_ca else "the system trust store (no trusted_ca)"
        # Two contexts: OpenSSL contexts are shared by their connections,
        # and the two sides set different verify callbacks per connection.
        # The anchors first: a file that is not PEM certificates is named
        # as itself, not as an OpenSSL error about the contexts.
        try:
            self.anchors = certpath.trust_anchors(trusted_ca)
        except (certpath.PathError, OSError) as e:
            raise certpath.PathError("cannot use %s: %s" % (
                trusted_ca, getattr(e, "strerror", None) or e)) from None
        self._receiving = _context(cert_file, key_file, trusted_ca)
        self._receiving.set_alpn_select_callback(_select_alpn)
        self._originating = _context(cert_file, key_file, trusted_ca)

    def receiving(self, verdict, direct=False):
        """
        The connection creator for ``transport.startTLS`` when the peer opened
        the stream (``direct``: TLS from the first byte, XEP-0368, where the
        peer's ALPN ``xmpp-server`` is answered; the same either way).
        """
        return _ReceivingTLS(self._receiving, verdict, self.roots, self.anchors)

    def originating(self, hostname, verdict, direct=False):
        """
        The connection creator when we opened the stream to ``hostname``;
        ``direct`` (XEP-0368) adds ALPN ``xmpp-server``.
        """
        return _OriginatingTLS(self._originating, hostname, verdict, self.required, self.roots,
                               self.anchors, alpn=[ALPN_XMPP_SERVER] if direct else None)

    def certifies(self, domain):
        """
        Whether our own certificate names ``domain``: without that, SASL
        EXTERNAL cannot prove it to a peer (XEP-0178), however well it chains.
        """
        names = getattr(self, "_own_names", None)
        if names is None:
            try:
                names = certs.certificate_names(certs.load_certificate(self.cert_file))
            except Exception:
                names = []
            self._own_names = names
        return any(certs.name_matches(name, domain) for name in names)

    def peer_proves(self, transport, verdict, domain):
        """
        Whether the peer's certificate on this TLS transport chains to a CA we
        trust (OpenSSL's check and ours, recorded in ``verdict``) and names
        ``domain`` (RFC 6125 DNS-ID).
        """
        if verdict is None or not verdict.chain_ok:
            return False
        certificate = transport.getPeerCertificate()
        if certificate is None:
            return False
        try:
            verify_certificate_hostname(certificate.to_cryptography(), domain)
        except VerificationError:
            return False
        return True


#: A certificate that expires sooner than this is a start-up warning.
EXPIRY_WARNING = datetime.timedelta(days=14)


def _warn_if_unfit(cert_file, names):
    """
    A certificate for the wrong domain, or an expired one, still loads; peers
    then refuse every stream, far from here.  Say so at start-up instead.
    """
    try:
        certificate = certs.load_certificate(cert_file)
    except Exception:
        return              # the policy's own loading says what is wrong
    has = certs.certificate_names(certificate)
    missing = [n for n in names if not any(certs.name_matches(p, n) for p in has)]
    if missing:
        log.warn("certificate {path} does not name {missing} (it names {has}); peers "
                 "that check certificates will refuse our streams for those",
                 path=cert_file, missing=", ".join(missing), has=", ".join(has) or "nothing")
    now = datetime.datetime.now(datetime.timezone.utc)
    expires = certificate.not_valid_after_utc
    if expires < now:
        log.error("certificate {path} expired on {date}; peers will refuse it",
                  path=cert_file, date=expires.date().isoformat())
    elif expires - now < EXPIRY_WARNING:
        log.warn("certificate {path} expires on {date}, in {days} day(s): renew it "
                 "(after an ACME client renews, 'wavebox cert import DOMAIN' and a "
                 "restart)", path=cert_file, date=expires.date().isoformat(),
                 days=(expires - now).days)


def policy_from_config(config, names):
    """
    The :class:`TLSPolicy` of a configuration.  ``names`` are every domain we
    answer for (each hosted domain and its wave service JID); when no
    certificate is configured, a self-signed one for them is kept in the data
    directory.
    """
    cert_file, key_file = certs.certificate_files(config, names)
    if config.certificate or not cert_file.endswith(certs.SELF_SIGNED_CERT):
        _warn_if_unfit(cert_file, names)
    else:
        log.warn("No --certificate configured: using the self-signed certificate "
                 "{path} for {names}.  Peers that check certificates will not trust "
                 "it; make a real one (see 'wavebox gencert').",
                 path=cert_file, names=", ".join(names))
    if not config.tls_required:
        log.warn("tls_required is off: S2S streams may run without TLS and peer "
                 "certificates are not checked.  Use this for tests only.")
    return TLSPolicy(cert_file, key_file, config.trusted_ca, config.tls_required)
