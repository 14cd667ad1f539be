"""
Why the wave server core refuses a delta or a request.

Each refusal of a submitted delta is a subclass of the model's own exception
for the same fault (:mod:`wavebox.model.errors`), so a layer that maps model
errors to protocol answers (federation: ``bad-request``, wave protocol 7(f))
needs no new cases, while the console and the tests can tell them apart.
Faults that are not about the delta itself (the wavelet lives elsewhere, the
history is corrupt) derive from :class:`WaveServerError`.
"""

from wavebox.model.errors import InvalidDelta, InvalidHashedVersion


class FutureVersion(InvalidHashedVersion):
    """The delta names a version beyond the wavelet's current version."""

    def __init__(self, target_version, current_version):
        InvalidHashedVersion.__init__(
            self, "delta targets version %d but the wavelet is at version %d"
            % (target_version, current_version))
        self.target_version = target_version
        self.current_version = current_version


class NotADeltaBoundary(InvalidHashedVersion):
    """The delta names a version inside a delta: no history starts there (section 4)."""

    def __init__(self, target_version):
        InvalidHashedVersion.__init__(
            self, "version %d is not a delta boundary of the wavelet's history"
            % (target_version,))
        self.target_version = target_version


class HashMismatch(InvalidHashedVersion):
    """
    The delta names a known version with a history hash other than ours: it
    was made against a history this server never had.
    """

    def __init__(self, target_version):
        InvalidHashedVersion.__init__(
            self, "the history hash given for version %d is not this wavelet's"
            % (target_version,))
        self.target_version = target_version


class EmptyDelta(InvalidDelta):
    """A delta without operations (section 6.6: rejected)."""


class OperationCountMismatch(InvalidDelta):
    """
    A remote applied delta, transformed here, does not give the number of
    operations its host says it applied (section 7(c)).
    """


class WaveServerError(Exception):
    """A request the core cannot serve, for a reason other than the delta's content."""


class NotHostedHere(WaveServerError):
    """The wavelet's domain is not ours: a local history/submit makes no sense for it."""


class HostedHere(WaveServerError):
    """A remote update for a wavelet we host ("Received update to local wavelet", 7(c)4)."""


class UnknownWavelet(WaveServerError):
    """No delta of this wavelet has ever been stored here."""


class WaveletCorrupted(WaveServerError):
    """
    A stored or received delta does not extend the hash chain we hold.  The
    wavelet takes no more deltas until an operator looks at it.
    """


class NoFederation(WaveServerError):
    """A local user submits to a wavelet hosted elsewhere, and no federation is wired in."""


class RemoteHostError(WaveServerError):
    """
    The host of a wavelet hosted elsewhere did not take a local user's
    delta.  Nothing was applied: the delta reaches our copy only through the
    host's update (wave protocol 7(b)6), so the user is told and may try
    again; nothing is kept to resend on its own.
    """

    def __init__(self, domain, reason):
        WaveServerError.__init__(self, domain, reason)
        self.domain = domain
        self.reason = reason

    def __str__(self):
        return "%s refused it: %s" % (self.domain, self.reason)


class HostUnreachable(RemoteHostError):
    """The host could not be found, connected to, or gave no answer in time."""

    def __str__(self):
        return "%s cannot be reached" % (self.domain,)


class NoSuchAccount(WaveServerError):
    """A participant of one of our domains that has no account here: nobody would read it."""


class ParticipantChangeRefused(WaveServerError):
    """
    A participant cannot be added (already there) or removed (not there):
    said in the person's terms, before any delta is made, by every front end.
    """
