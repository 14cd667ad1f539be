"""
What ``wavebox check DOMAIN`` (:mod:`wavebox.cli.check`) does: find the wave
service of DOMAIN the way the server would (the seed's connection
establishment, :mod:`wavebox.xmpp.discovery`), and print every step.  An operator runs it against their own domain to see
what peers will see, or against a peer that does not answer.
"""

from twisted.internet import defer

from wavebox.xmpp.discovery import (DiscoveryFailed, WaveServiceDiscovery,
                                    default_disco_for_check)
from wavebox.xmpp.resolver import DnspythonResolver


@defer.inlineCallbacks
def tcp_connect(reactor, endpoint, timeout):
    """Deferred[None or str]: None when a TCP connection opens, else why not."""
    from twisted.internet import endpoints, error, protocol
    kind = endpoints.TCP6ClientEndpoint if ":" in endpoint.host else endpoints.TCP4ClientEndpoint
    try:
        connected = yield endpoints.connectProtocol(
            kind(reactor, endpoint.host, endpoint.port, timeout=timeout), protocol.Protocol())
    except error.ConnectionRefusedError:
        return "connection refused"
    except (error.TimeoutError, defer.TimeoutError):
        return "no answer within %gs" % (timeout,)
    except Exception as e:
        return str(e) or type(e).__name__
    connected.transport.loseConnection()
    return None


@defer.inlineCallbacks
def _reach(reactor, endpoints, timeout, connect, lines):
    """
    Steps 1-12 say where the wave service is, not that it answers there.  A
    peer needs it to accept connections too (the seed: "each server ... needs
    to be able to initiate a connection with the other"), so try each
    address; the first that accepts is enough.  None, or the last reason.
    """
    reason = None
    for endpoint in endpoints:
        reason = yield connect(reactor, endpoint, timeout)
        lines.append("connect to %s -> %s" % (endpoint, reason or "accepted"))
        if reason is None:
            return None
    return reason


@defer.inlineCallbacks
def run_check(reactor, domain, config, out, disco=None, connect=tcp_connect):
    """Deferred[int]: the exit status, after the trace and the verdict went to ``out``."""
    if disco is None:
        disco = default_disco_for_check(config)
    resolver = DnspythonResolver(nameserver=config.nameserver, timeout=config.dns_timeout)
    discovery = WaveServiceDiscovery(resolver, disco, clock=reactor,
                                     service_prefix=config.wave_service_prefix)
    where = ("name server %s:%d" % config.nameserver) if config.nameserver else \
        "the system's name servers"
    out.write("checking %s with %s\n" % (domain, where))
    status = None
    try:
        result = yield discovery.discover(domain)
    except DiscoveryFailed as e:
        status = 1
        lines = list(e.trace)
        verdict = "%s: NOT FOUND (%s): %s" % (domain, e.condition, e.reason)
    else:
        lines = list(result.trace)
        verdict = "%s: wave service %s at %s" % (
            domain, result.jid, ", ".join(str(e) for e in result.endpoints))
    finally:
        close = getattr(disco, "close", None)
        if close is not None:
            yield close()
    if status is None:
        unreachable = yield _reach(reactor, result.endpoints, config.dns_timeout, connect, lines)
        status = 0 if unreachable is None else 1
        if unreachable is not None:
            verdict += ", but it does not accept connections (%s)" % (unreachable,)
    for line in lines:
        out.write("  %s\n" % (line,))
    out.write(verdict + "\n")
    return status
