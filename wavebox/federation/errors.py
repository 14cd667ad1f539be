"""
How a refusal inside the server becomes a stanza error on the wire (wave
protocol §1.8: nearly everything is ``bad-request``).

Model and core errors about the request itself (a malformed or stale delta,
an unknown version, a bad signature, a wavelet that is not ours) are
``bad-request``, as FedOne and WIAB answer them.  Faults of ours that may
pass (a store failure, a signer we could not fetch yet) are
``internal-server-error``, whose type ``wait`` tells a well-behaved peer to
try again later; our own outbox does so.
"""

from wavebox import crypto
from wavebox.federation.stanzas import UNKNOWN_SIGNER, FederationError
from wavebox.model.errors import ModelError
from wavebox.server import errors as server_errors

#: Answers that mean "the host is not there" (the S2S layer's bounces, XEP-0199's
#: and RFC 6120's conditions for a peer that is down), not a refusal by the host.
UNREACHABLE = frozenset(["remote-server-not-found", "remote-server-timeout",
                         "service-unavailable", "recipient-unavailable"])


def as_federation_error(exc):
    """The FederationError to answer ``exc`` (an exception or a Failure) with."""
    if hasattr(exc, "value") and hasattr(exc, "getTraceback"):
        exc = exc.value
    if isinstance(exc, FederationError):
        return exc
    if isinstance(exc, crypto.UnknownSignerError):
        return FederationError("internal-server-error", "Unknown signer: %s" % (exc,),
                               application=UNKNOWN_SIGNER)
    if isinstance(exc, crypto.SignatureError):
        return FederationError("bad-request", "Remote verification failed: %s" % (exc,))
    if isinstance(exc, server_errors.WaveletCorrupted):
        return FederationError("bad-request", str(exc))
    if isinstance(exc, (ModelError, server_errors.WaveServerError)):
        return FederationError("bad-request", str(exc) or exc.__class__.__name__)
    return FederationError("internal-server-error", "%s: %s" % (exc.__class__.__name__, exc))


def as_remote_host_error(host, error):
    """A host's failed answer to our submit, as the wave server core words it."""
    if error.condition in UNREACHABLE:
        return server_errors.HostUnreachable(host, error.text or error.condition)
    return server_errors.RemoteHostError(
        host, "%s%s" % (error.condition, ": " + error.text if error.text else ""))
