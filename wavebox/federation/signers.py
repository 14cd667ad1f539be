"""
The signer infos a federating server knows, and the check of every signed
delta that reaches it from another server (wave protocol §5, §7(b)3, §7(c)1-2;
WIAB ``CertificateManagerImpl``).

Signer infos come from four places: our own (known from start-up, so we can
answer signer gets for our deltas), posted by a submitting server (§1.7),
fetched from a wavelet's host (§1.6), and fetched by our host from a
submitting server that did not post it (issue 5; the same §1.6 request).  A
posted or fetched chain is kept, in the store, only after it validates as
one certification path from our trusted roots (``crypto.validate_chain``,
the rule of ``wavebox.certpath``) and its leaf speaks for the domain it
claims.  Our own chains are trusted as configured.

Secure by default: every signature is checked and every chain validated.
``verify_signatures=False`` (WIAB ``waveserver_disable_verification``) and
``validate_chains=False`` (``waveserver_disable_signer_verification``: any
chain, even self-signed, but signatures still checked against it) exist for
peers that cannot do better, and say so in the log.
"""

from twisted.internet import defer
from twisted.logger import Logger

from wavebox import crypto
from wavebox.wire import convert

log = Logger()


class SignerInfos:
    """
    Signer infos by signer id, over the store's ``put_signer_info`` /
    ``get_signer_info`` (the blob is a serialized ProtocolSignerInfo).
    """

    def __init__(self, store, own=(), trusted_roots=(), verify_signatures=True,
                 validate_chains=True):
        self.store = store
        self.verify_signatures = verify_signatures
        own = list(own)
        self.validator = crypto.ChainValidator(
            trusted_roots, disabled=not validate_chains,
            own=[info.certificates for info in own])
        self._cache = {}
        self.own = {}
        for info in own:
            self.own[info.signer_id] = info
            self._cache[info.signer_id] = info
        if not verify_signatures:
            log.warn("delta signatures from other servers are NOT checked "
                     "(verify-signatures = no)")
        elif not validate_chains:
            log.warn("signer certificate chains are NOT validated against trusted roots")

    @defer.inlineCallbacks
    def get(self, signer_id):
        """The SignerInfo of ``signer_id``, or None."""
        signer_id = bytes(signer_id)
        info = self._cache.get(signer_id)
        if info is None:
            stored = yield self.store.get_signer_info(signer_id)
            if stored is not None:
                info = convert.parse_signer_info(stored.blob)
                self._cache[signer_id] = info
        return info

    def check(self, info):
        """
        Raise crypto.SignatureError unless the chain validates and its leaf
        speaks for its domain: what a chain must pass before we keep it.
        """
        crypto.verify_signer_info(info, self.validator)
        crypto.check_authority(info.domain, info.certificates[0])

    @defer.inlineCallbacks
    def accept(self, info, for_domain=None):
        """
        Check a posted or fetched signer info, then keep it.  Fires with its
        signer id.  ``for_domain``: the leaf must also speak for that domain
        (a chain fetched from a submitter must be one of the submitter's).
        """
        self.check(info)
        if for_domain is not None:
            crypto.check_authority(for_domain, info.certificates[0])
        signer_id = info.signer_id
        if signer_id not in self._cache:
            yield self.store.put_signer_info(signer_id, info.domain,
                                             convert.serialize_signer_info(info))
            self._cache[signer_id] = info
        return signer_id

    @defer.inlineCallbacks
    def verify(self, signed_delta, fetch=None):
        """
        Check a signed delta (a model SignedDelta with its parsed delta):
        one good signature per signing domain by a known, valid signer.
        ``fetch(signer_id)`` is asked (a Deferred firing with a SignerInfo or
        None) for each signer we do not know; what it finds is checked and
        kept before use.  Raises a crypto.SignatureError subclass.
        """
        if not self.verify_signatures:
            return
        infos = {}
        for signature in signed_delta.signatures:
            signer_id = bytes(signature.signer_id)
            info = yield self.get(signer_id)
            if info is None and fetch is not None:
                fetched = yield fetch(signer_id)
                if fetched is not None:
                    if fetched.signer_id != signer_id:
                        raise crypto.UnknownSignerError(
                            "the fetched chain is not the one of signer id %s"
                            % (signer_id.hex(),), signer_id)
                    yield self.accept(fetched)
                    info = fetched
            if info is not None:
                infos[signer_id] = info
        crypto.verify_signed_delta(signed_delta.delta_bytes, signed_delta.signatures, infos,
                                   self.validator, delta=signed_delta.delta)
