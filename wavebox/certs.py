"""
The domain certificate: one place that answers "which certificate chain and
private key speak for our domains?", for both users of it -- STARTTLS on XMPP
server-to-server streams and the signing of deltas (wave protocol section 5).

With ``--certificate``/``--private-key`` configured, those files are the
answer.  Without them the self-signed certificate that the XMPP layer keeps
in the data dir (:func:`wavebox.xmpp.certs.certificate_files`, under
``DATA_DIR/tls``; the XMPP layer's own TLS set-up asks the same function) is
used, made for every hosted domain and its wave service JID
(``wave.DOMAIN``).  Its key is RSA in unencrypted PKCS#8 PEM, the form
FedOne's ``make_cert.sh`` produced, so SHA1withRSA delta signatures work
with it.  Peers trust such a certificate only when told to; it exists so that a
fresh server runs, and signs its deltas, with no set-up.
"""

from wavebox.xmpp.certs import SELF_SIGNED_DIR, certificate_files  # noqa: F401


def certificate_names(config):
    """Every DNS name the certificate must carry: each domain and its wave JID."""
    names = []
    for domain in config.domains:
        for name in (domain, config.service_jid(domain)):
            if name not in names:
                names.append(name)
    return names


def ensure_certificate(config):
    """
    The (certificate chain PEM path, private key PEM path) for our domains.

    A generated certificate is made again when it no longer names every
    hosted domain, or is about to expire.
    """
    return certificate_files(config, certificate_names(config))
