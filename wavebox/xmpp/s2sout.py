"""
The way out to a remote domain (Prosody's ``s2sout``), in the order it goes:
where the domain is (a hint from discovery, then DNS: RFC 6120 3.2), each
endpoint in order, an open stream to that address if one may carry the
pair (XEP-0220 2.6 multiplexing), else a new connection; then the
negotiation (STARTTLS, the certificate) and the authentication of the pair
(SASL EXTERNAL or dialback, :mod:`wavebox.xmpp.sasl`).

The service (:class:`wavebox.xmpp.server.S2SService`) owns one
:class:`OutboundStreams`; its routes and dialback's questions to an
Authoritative Server ask it for a stream.
"""

import ipaddress

from twisted.internet import defer
from twisted.logger import Logger

from wavebox.xmpp.resolver import ResolutionTimeout
from wavebox.xmpp.streams import OutgoingFactory, OutgoingStream, RouteFailed, describe_reason

log = Logger()


class _NotShared(Exception):
    """This open stream may not carry a new domain pair; try the next one."""


class _Hint:
    def __init__(self, endpoints, expires):
        self.endpoints = list(endpoints)
        self.expires = expires


class OutboundStreams:
    """
    Streams we open, for one S2S service: ``resolve(domain)`` gives a
    Deferred list of endpoints, ``connect`` is ``reactor.connectTCP``'s
    signature.
    """

    def __init__(self, server, resolve, connect):
        self.server = server
        self._resolve = resolve
        self._connect_tcp = connect
        self.hints = {}
        self._no_multiplex = {}     # peer (host, port) -> until when it gets a stream per pair

    def set_endpoints(self, domain, endpoints):
        """Remember that ``domain`` was found at ``endpoints``; tried before DNS."""
        if endpoints:
            self.hints[domain.lower()] = _Hint(
                endpoints, self.server.clock.seconds() + self.server.hint_lifetime)

    @defer.inlineCallbacks
    def stream_to(self, local, remote, authenticate):
        """
        A negotiated outgoing stream to ``remote`` (authenticated for
        (local, remote) when ``authenticate``): endpoints from the hint, then
        DNS; for each, an open stream to that address, else a new one.
        """
        reasons = []
        tried = set()
        hint = self.hints.get(remote)
        phases = []
        if hint is not None and hint.expires > self.server.clock.seconds():
            phases.append(hint.endpoints)
        resolved = False
        while True:
            if phases:
                endpoints = phases.pop(0)
            elif not resolved:
                resolved = True
                try:
                    endpoints = yield self._resolve(remote)
                except Exception as e:
                    if not reasons:
                        timed_out = isinstance(e, (ResolutionTimeout, defer.TimeoutError))
                        raise RouteFailed(
                            "remote-server-timeout" if timed_out else "remote-server-not-found",
                            "cannot resolve %s: %s" % (remote, describe_reason(e)))
                    break
                if not endpoints and not reasons:
                    raise RouteFailed("remote-server-not-found", "no address for %s" % (remote,))
            else:
                break
            for endpoint in endpoints:
                address = (endpoint.host, endpoint.port)
                if address in tried:
                    continue
                tried.add(address)
                for stream in self._reusable(address, local, remote, authenticate):
                    try:
                        yield self._prepared(stream, local, remote, authenticate)
                        return stream
                    except _NotShared:
                        continue
                    except Exception as e:
                        reasons.append(describe_reason(e))
                if self.server.stopping:
                    raise RouteFailed("remote-server-timeout", "shutting down")
                stream = self._connect(address, local, remote,
                                       getattr(endpoint, "direct_tls", False))
                try:
                    yield self._prepared(stream, local, remote, authenticate)
                    return stream
                except Exception as e:
                    reasons.append(describe_reason(e))
                    if not stream.negotiated.done:
                        stream.close()
        raise RouteFailed("remote-server-timeout", "; ".join(reasons) or
                          "no address for %s" % (remote,))

    def multiplexes(self, address):
        """May new domain pairs share our streams to ``address`` (host, port)?"""
        until = self._no_multiplex.get(address)
        if until is None:
            return True
        if until <= self.server.clock.seconds():
            del self._no_multiplex[address]
            return True
        return False

    def _reusable(self, address, local, remote, authenticate):
        """
        Open streams to ``address`` that may carry what we need, best first.

        A ``db:verify`` may go on any of them (the Authoritative Server
        answers on any stream, even one whose own dialback is pending: that
        is how we serve Prosody, which holds its verify until its stream to
        us is authenticated).  Stanzas go first on a stream opened for their
        own pair or already authenticated for it, then on any other stream
        to the same address: "if the hostname and port resolution results in
        the same IP address and port combination" the new pair may be
        multiplexed on it (XEP-0220 2.6.2), which is the seed's step 11 for
        a domain and its wave service.
        """
        streams = [s for s in self.server.outgoing if s.address == address]
        if not authenticate:
            return streams
        pair = (local, remote)
        own = [s for s in streams if pair in s.authenticated or (s.local, s.remote) == pair]
        if not self.multiplexes(address):
            return own
        shared = [s for s in streams if s not in own]
        # Streams that already carry stanzas before ones still negotiating.
        shared.sort(key=lambda s: not (s.usable and s.authenticated))
        return own + shared

    def _connect(self, address, local, remote, direct_tls=False):
        if self.server.tls is None:
            direct_tls = False
        session = OutgoingStream(self.server, local, remote, address, direct_tls)
        self.server.outgoing.append(session)
        host, port = address
        session.connector = self._connect_tcp(
            host, port, OutgoingFactory(session), timeout=self.server.connect_timeout,
            bindAddress=self._bind_address(host))
        return session

    def _bind_address(self, host):
        """Leave from our own address when we listen on one (same family only)."""
        if not self.server.interface:
            return None
        try:
            ours, theirs = ipaddress.ip_address(self.server.interface), ipaddress.ip_address(host)
        except ValueError:
            return None
        if ours.version != theirs.version or ours.is_loopback != theirs.is_loopback:
            return None
        return (self.server.interface, 0)

    @defer.inlineCallbacks
    def _prepared(self, stream, local, remote, authenticate):
        yield stream.negotiated.wait().addTimeout(self.server.connect_timeout, self.server.clock)
        if not stream.usable:
            raise RouteFailed("remote-server-timeout", "stream to %s closed" % (stream.peer,))
        if not stream.covers(remote):
            raise RouteFailed("remote-server-timeout", "the certificate at %s does not name %s"
                              % (stream.peer, remote))
        if not authenticate:
            return
        pair = (local, remote)
        multiplexed = pair not in stream.authenticated and (stream.local, stream.remote) != pair
        if multiplexed and not self.multiplexes(stream.address):
            raise _NotShared()      # learnt while we waited for the negotiation
        if multiplexed and remote != stream.remote and not stream.dialback_errors:
            # XEP-0220 2.6.2: no new target domain on a stream whose peer
            # did not offer dialback errors (Prosody 0.12 does not).
            raise _NotShared()
        if multiplexed and not self.server.authentication.may_multiplex(stream):
            raise _NotShared()      # only dialback adds pairs; this peer has none
        try:
            yield self.server.authentication.originate(stream, local, remote).addTimeout(
                self.server.dialback_timeout, self.server.clock)
        except Exception as e:
            if multiplexed:
                self._multiplexing_refused(stream, pair, e)
            raise

    def _multiplexing_refused(self, stream, pair, reason):
        """
        The peer said no (or nothing, or closed) to a multiplexed
        ``db:result``: the pair falls back to a stream of its own, and new
        pairs for that address get theirs too for ``no_multiplex_lifetime``.
        """
        if self.server.stopping:
            return
        self._no_multiplex[stream.address] = self.server.clock.seconds() + self.server.no_multiplex_lifetime
        log.warn("S2S: {peer} did not accept {local} -> {remote} on a shared stream "
                 "({reason}); one stream per domain pair there for the next {lifetime:.0f}s",
                 peer=stream.peer, local=pair[0], remote=pair[1], reason=describe_reason(reason),
                 lifetime=self.server.no_multiplex_lifetime)

    def negotiate(self, address, local, remote, direct_tls=False):
        """
        A new stream from ``local`` to ``remote`` at ``address`` (host, port),
        carried through STARTTLS and the check of ``remote``'s certificate
        exactly as for a route, but not authenticated: what ``wavebox check``
        tries.  Deferred[OutgoingStream]; close it when done.  Fails with the
        reason the stream did not get there.
        """
        stream = self._connect(tuple(address), local, remote, direct_tls)
        d = stream.negotiated.wait().addTimeout(self.server.connect_timeout, self.server.clock)

        def failed(reason):
            stream.close()
            return reason
        return d.addCallbacks(lambda _: stream, failed)
