"""
The tests' one PKI for TLS on S2S streams: a CA made once per test process
and server certificates it issues, each for a domain and its wave service
JID (``a.test`` and ``wave.a.test``).  The in-process federation stacks and
the real peers (``tests/ejabberd.py``) take their certificates from here,
so every party can trust every other by trusting this CA.
"""

import functools
import os

from wavebox.xmpp import certs


@functools.lru_cache(maxsize=None)
def ca():
    """(key, certificate) of the tests' CA."""
    return certs.make_ca("Wavebox Federation Test CA")


@functools.lru_cache(maxsize=None)
def domain_certificate(domain):
    """(key, certificate) for ``domain`` and ``wave.domain``, issued by the test CA."""
    return certs.make_server_certificate(certs.server_names(domain), ca=ca())


def write_domain_files(domain, directory):
    """
    ``cert.pem`` (the domain's certificate, then the CA's), ``key.pem`` and
    ``ca.pem`` in ``directory``, as wavebox's --certificate, --private-key
    and --trusted-ca take them; their paths, in that order.
    """
    key, certificate = domain_certificate(domain)
    ca_certificate = ca()[1]
    paths = tuple(os.path.join(directory, name) for name in ("cert.pem", "key.pem", "ca.pem"))
    for path, data in zip(paths, (certs.cert_pem(certificate, ca_certificate),
                                  certs.key_pem(key), certs.cert_pem(ca_certificate))):
        with open(path, "wb") as f:
            f.write(data)
    return paths
