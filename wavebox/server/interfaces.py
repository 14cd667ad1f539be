"""
The seams of the wave server core: the values it hands out and the
interfaces of those who listen to it or carry its deltas elsewhere.

Who uses what:

* Console sessions subscribe per wavelet (the wave they have open) and per
  participant (so that a wave they were just added to reaches them at once);
  both receive :class:`WaveletUpdate` through :class:`IWaveletListener`.
* The federation layer (issue 5) plugs in three ways, none of which needs
  the core to know XMPP:

  - as an :class:`IWaveletListener` added with ``WaveServer.add_listener``:
    it hears every delta after it is durable, with the exact applied-delta
    bytes and the participants before and after, from which
    :meth:`WaveletUpdate.remote_domains` gives the domains to push to
    (wave protocol 7(a)4);
  - as an :class:`IOutboxSource`: asked *before* a delta is stored for the
    ``(destination, payload)`` pairs to queue, so that the store writes them
    in the same transaction as the delta and no update is lost in a crash
    between the two;
  - as an :class:`IRemoteSubmitter`: local users' deltas to wavelets hosted
    elsewhere are signed here and handed to it (7(b)).

  In the other direction it calls the core: ``WaveServer.submit_signed`` for
  a remote user's submit to a wavelet we host (7(b)3),
  ``WaveServer.apply_remote_deltas`` for updates of wavelets hosted elsewhere
  (7(c)), and ``WaveServer.history`` to answer history requests (7(g)).
"""

from dataclasses import dataclass, field

from zope.interface import Interface


@dataclass(frozen=True)
class SubmitResult:
    """The answer to a submit (the fields of a submit-response, 1.4)."""

    operations_applied: int
    hashed_version_after: object   # HashedVersion
    timestamp_ms: int
    duplicate: bool = False        # an idempotent resubmission: nothing new was applied


@dataclass(frozen=True)
class WaveletUpdate:
    """
    What one durable delta did to one wavelet.  Sent to listeners only after
    the store has it on disk.
    """

    wavelet_name: object           # WaveletName
    applied: object                # wavebox.model.delta.AppliedDelta (with the exact bytes)
    transformed: object            # wavebox.model.delta.TransformedDelta (ops as applied)
    participants_before: frozenset
    participants_after: frozenset
    hosted: bool                   # True: we host it (the delta is authoritative here)
    outbox_ids: tuple = field(default=())

    @property
    def author(self):
        return self.transformed.author

    @property
    def operations(self):
        """The operations as they changed the wavelet (after transform)."""
        return self.transformed.operations

    @property
    def applied_delta_bytes(self):
        """The serialized ProtocolAppliedWaveletDelta: hash these, send these."""
        return self.applied.applied_delta_bytes

    @property
    def resulting_version(self):
        return self.transformed.resulting_version

    @property
    def added(self):
        return self.participants_after - self.participants_before

    @property
    def removed(self):
        return self.participants_before - self.participants_after

    def remote_domains(self, local_domains):
        """
        The domains that must receive this delta (7(a)4): every participant's
        domain after the delta plus those removed by it, without our own.
        """
        domains = {p.domain for p in self.participants_after | self.participants_before}
        return sorted(domains - set(local_domains))


class IWaveletListener(Interface):
    """Hears of every durable delta of the wavelets it listens to."""

    def wavelet_updated(update):
        """
        A :class:`WaveletUpdate`.  Called in the reactor thread, in version
        order per wavelet.  Must not raise (the core logs and goes on if it
        does) and must not block: slow work is for later.
        """


class IOutboxSource(Interface):
    """Decides, before a delta is stored, what the federation outbox gets."""

    def outbox_for(update):
        """
        ``[(destination domain, payload bytes), ...]`` to store, in the same
        transaction as the delta (``update.applied``).  ``update.outbox_ids`` is empty here;
        listeners later see the ids the store assigned.
        """


class IRemoteSubmitter(Interface):
    """Carries a local user's delta to the host of a wavelet hosted elsewhere."""

    def submit(wavelet_name, signed_delta):
        """
        Send ``signed_delta`` (serialized ProtocolSignedDelta bytes) to the
        wavelet's host.  Fires with a :class:`SubmitResult` from its
        submit-response.  The delta reaches our copy of the wavelet only when
        the host's update comes back (7(b)6).  Fails with
        :class:`~wavebox.server.errors.HostUnreachable` when the host cannot
        be reached, :class:`~wavebox.server.errors.RemoteHostError` when it
        refuses the delta.
        """


@dataclass(frozen=True)
class DeliveryProblem:
    """
    Why what we send to a remote domain does not arrive: shown to people
    next to each participant of that domain ("pending"), and to operators.
    ``since_ms`` is when it started failing; ``given_up`` says we stopped
    trying (after ``--federation-give-up``, or ``wavebox outbox drop``).
    """

    domain: str
    reason: str
    since_ms: int
    given_up: bool = False


class IDeliveryStatus(Interface):
    """What the federation layer knows of delivery, for front ends (console, web)."""

    def problem(domain):
        """A :class:`DeliveryProblem`, or None while delivery to ``domain`` works
        (or nothing is waiting for it)."""

    def probe(domain):
        """
        Deferred[str or None]: why ``domain`` has no wave service we can
        find now (a participant added there would see nothing), or None
        when it has one.
        """
