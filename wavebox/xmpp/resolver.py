"""
DNS for XMPP server-to-server: SRV (RFC 2782) and A/AAAA lookups, and the
hostname resolution of RFC 6120 section 3.2 (``_xmpp-server._tcp.DOMAIN``,
then the domain's own addresses on port 5269).

The rest of wavebox sees DNS only through :class:`IResolver`, so that the
discovery story (:mod:`wavebox.xmpp.discovery`) runs against an in-memory
:class:`FakeResolver` in unit tests and against :class:`DnspythonResolver`
(dnspython, one worker thread per query) in the server.  dnspython blocks, so
it never runs on the reactor thread: a slow or silent name server must not
stall every stream of the server.
"""

import ipaddress
import random as _random
import socket
from dataclasses import dataclass

import dns.exception
import dns.resolver
from twisted.internet import defer, threads
from twisted.internet.error import DNSLookupError
from zope.interface import Interface, implementer

# RFC 6120 3.2.2: with no SRV record, the domain itself on the registered port.
XMPP_SERVER_PORT = 5269
XMPP_SERVER_SERVICE = "_xmpp-server._tcp."


# --- values -----------------------------------------------------------------

def _normal_name(name):
    """Lower case, no trailing dot; the root stays ``"."``."""
    name = str(name).strip().lower()
    if name in (".", ""):
        return "."
    return name.rstrip(".")


@dataclass(frozen=True)
class SRVRecord:
    """One SRV resource record.  ``target`` is ``"."`` for "no service here"."""
    priority: int
    weight: int
    port: int
    target: str

    def __post_init__(self):
        object.__setattr__(self, "target", _normal_name(self.target))

    @property
    def is_root(self):
        return self.target == "."

    def __str__(self):
        # The zone-file spelling, as dig prints it.
        target = "." if self.is_root else self.target + "."
        return "%d %d %d %s" % (self.priority, self.weight, self.port, target)


@dataclass(frozen=True)
class Endpoint:
    """A place to connect to: an IP address and port, and the DNS name it came from."""
    host: str
    port: int
    target: str

    def __str__(self):
        if ":" in self.host:
            return "[%s]:%d" % (self.host, self.port)
        return "%s:%d" % (self.host, self.port)


# --- errors -------------------------------------------------------------------
# All are DNSLookupError, so callers that only care that "DNS failed" can
# catch that.  The subclasses say *how*, because an XMPP server answers
# remote-server-not-found and remote-server-timeout differently.

class _DNSError(DNSLookupError):
    """A DNS failure about one name, with a short reason for the trace and logs."""

    def __init__(self, name, reason=""):
        DNSLookupError.__init__(self, name, reason)
        self.name = name
        self.reason = reason

    def __str__(self):
        return "%s: %s" % (self.name, self.reason) if self.reason else self.name


class DNSQueryError(_DNSError):
    """A query got no usable answer: SERVFAIL, REFUSED, no reachable server."""


class DNSTimeoutError(DNSQueryError):
    """A query got no answer at all within the timeout."""


class ResolutionError(_DNSError):
    """The hostname resolution of one XMPP domain found nowhere to connect."""

    @property
    def domain(self):
        return self.name


class NoServiceError(ResolutionError):
    """The domain's only SRV target is ".": it says it offers no XMPP server service."""


class DomainNotFound(ResolutionError):
    """DNS answered, and no SRV target nor the domain itself has an address."""


class ResolutionTimeout(ResolutionError):
    """Nothing resolved, and at least one query timed out (it may work later)."""


# --- the interface ------------------------------------------------------------

class IResolver(Interface):
    """The two DNS questions XMPP server-to-server asks."""

    def lookup_srv(name):
        """
        SRV records of ``name`` (e.g. ``_xmpp-server._tcp.b.test``).
        Deferred[list[SRVRecord]]: empty when the name does not exist or has
        no SRV record; fails with :class:`DNSQueryError` (or
        :class:`DNSTimeoutError`) when DNS could not answer.
        """

    def lookup_addresses(name):
        """
        IPv4 then IPv6 addresses of ``name``.  Deferred[list[str]]: empty when
        there are none; fails as :meth:`lookup_srv` does.
        """


# --- dnspython, off the reactor thread ---------------------------------------

@implementer(IResolver)
class DnspythonResolver:
    """
    dnspython in the reactor's thread pool.  Each query gets a fresh
    ``dns.resolver.Resolver``: they are cheap, and a fresh one shares no state
    with the other worker threads.  With no ``nameserver`` the system's
    configuration (``/etc/resolv.conf``) is read on each query, inside the
    thread, so that a changed configuration is honoured without a restart.
    """

    def __init__(self, nameserver=None, timeout=5.0):
        self.nameserver = nameserver    # (host, port) or None for the system's
        self.timeout = timeout

    def lookup_srv(self, name):
        return threads.deferToThread(self._srv_blocking, name)

    def lookup_addresses(self, name):
        # Both families are asked even when A answers, so that the connector
        # can go on to an IPv6 address when the IPv4 ones do not answer.  They
        # are asked at once, each in its own worker thread: one round trip to
        # the name server instead of two in a row, on every S2S set-up (and
        # dialback's connect-back) that looks up a host.
        queries = [threads.deferToThread(self._family_blocking, name, rdtype)
                   for rdtype in ("A", "AAAA")]
        return defer.DeferredList(queries, consumeErrors=True).addCallback(_both_families)

    # What follows runs in a worker thread.

    def _resolver(self):
        if self.nameserver is None:
            try:
                resolver = dns.resolver.Resolver()
            except dns.exception.DNSException as e:
                raise DNSQueryError("(system resolver)", "no usable DNS configuration: %s" % (e,))
        else:
            host, port = self.nameserver
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [_ip_address_of(host)]
            resolver.port = port
        resolver.cache = None
        resolver.timeout = self.timeout
        resolver.lifetime = self.timeout
        return resolver

    def _query(self, resolver, name, rdtype):
        """The answer's records, [] for NXDOMAIN/no data, or DNSQueryError."""
        qname = _normal_name(name) + "."   # absolute: never the search list
        try:
            return list(resolver.resolve(qname, rdtype, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout:
            raise DNSTimeoutError(name, "%s query timed out after %gs" % (rdtype, self.timeout))
        except dns.resolver.NoNameservers:
            raise DNSQueryError(name, "%s query: no name server answered (SERVFAIL or REFUSED)"
                                % (rdtype,))
        except dns.exception.DNSException as e:
            raise DNSQueryError(name, "%s query failed: %s" % (rdtype, e))

    def _srv_blocking(self, name):
        return [SRVRecord(rr.priority, rr.weight, rr.port, rr.target.to_text())
                for rr in self._query(self._resolver(), name, "SRV")]

    def _family_blocking(self, name, rdtype):
        return [rr.address for rr in self._query(self._resolver(), name, rdtype)]


def _both_families(results):
    """A and AAAA answers together; one family failing is no failure when the other gave
    addresses."""
    addresses, errors = [], []
    for ok, value in results:
        if ok:
            addresses.extend(value)
        elif value.check(DNSQueryError):
            errors.append(value.value)
        else:
            return value        # not a DNS answer: a fault, passed on as it is
    if addresses or not errors:
        return addresses
    timeouts = [e for e in errors if isinstance(e, DNSTimeoutError)]
    raise (timeouts or errors)[0]


def _ip_address_of(host):
    """dnspython wants the name server as an address; a name is looked up, IPv4 first."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, 53, type=socket.SOCK_DGRAM)
    except OSError as e:
        raise DNSQueryError(host, "cannot find the name server %s: %s" % (host, e))
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return infos[0][4][0]


# --- in memory, for tests -------------------------------------------------------

@implementer(IResolver)
class FakeResolver:
    """
    DNS from dictionaries.  ``srv`` maps the SRV owner name (with the
    ``_xmpp-server._tcp.`` prefix) to records, ``addresses`` a host name to
    its addresses, ``failures`` any name to the exception its queries fail
    with.  ``queries`` records every question, in order, as ``(type, name)``.
    """

    def __init__(self, srv=None, addresses=None, failures=None):
        self.srv = {_normal_name(k): list(v) for k, v in (srv or {}).items()}
        self.addresses = {_normal_name(k): list(v) for k, v in (addresses or {}).items()}
        self.failures = {_normal_name(k): v for k, v in (failures or {}).items()}
        self.queries = []

    def _answer(self, kind, name, table):
        name = _normal_name(name)
        self.queries.append((kind, name))
        if name in self.failures:
            return defer.fail(self.failures[name])
        return defer.succeed(list(table.get(name, [])))

    def lookup_srv(self, name):
        return self._answer("SRV", name, self.srv)

    def lookup_addresses(self, name):
        return self._answer("A/AAAA", name, self.addresses)


# --- RFC 2782 ordering ------------------------------------------------------

def order_srv(records, random=_random):
    """
    The order in which to try SRV targets (RFC 2782, "Usage rules"): lowest
    priority first; within one priority, a weighted random draw, repeated
    until every record has been picked.  Weight-0 records go first in the
    running sum, so they are picked only when the draw is 0 or they are all
    that is left, which is the "very small chance" the RFC gives them.

    ``random`` needs only ``randint(a, b)`` (both ends included).
    """
    ordered = []
    for priority in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == priority]
        group.sort(key=lambda r: r.weight != 0)     # stable: zeros first
        while group:
            draw = random.randint(0, sum(r.weight for r in group))
            running = 0
            for record in group:
                running += record.weight
                if running >= draw:
                    break
            group.remove(record)
            ordered.append(record)
    return ordered


# --- RFC 6120 3.2 for one domain --------------------------------------------------

def srv_name(domain):
    return XMPP_SERVER_SERVICE + _normal_name(domain)


def describe_dns_error(error):
    """A DNS failure in a few words, for the trace."""
    if isinstance(error, DNSTimeoutError):
        return "timeout"
    return "failed (%s)" % (getattr(error, "reason", "") or error,)


@defer.inlineCallbacks
def resolve_server(resolver, domain, trace, srv_step=1, target_step=2, a_step=3,
                   random=_random):
    """
    Where to connect for the XMPP domain ``domain``: the seed's steps 1-4
    (the hostname resolution of RFC 6120 3.2).  Every query is written to
    ``trace`` (anything with ``step(number, text)``, see
    :class:`wavebox.xmpp.discovery.Trace`) under the step numbers given, so
    the same function tells steps 1-4, 7 and 10.

    Deferred[list[Endpoint]], in the order to try them: SRV targets in
    RFC 2782 order, each with all its addresses; without SRV, the domain's
    own addresses on port 5269.  Fails with :class:`NoServiceError`,
    :class:`DomainNotFound` or :class:`ResolutionTimeout`.
    """
    domain = _normal_name(domain)

    # Step 1: SRV.
    name = srv_name(domain)
    srv_error = None
    try:
        records = yield resolver.lookup_srv(name)
    except DNSLookupError as e:
        srv_error, records = e, []
        trace.step(srv_step, "SRV %s -> %s" % (name, describe_dns_error(e)))
    else:
        trace.step(srv_step, "SRV %s -> %s" % (
            name, ", ".join(str(r) for r in records) if records else "none"))

    if records:
        # Step 2: the lookup succeeded; the targets are where step 5 goes.
        targets = [r for r in records if not r.is_root]
        if not targets:
            raise NoServiceError(domain, 'the SRV target is ".": no XMPP service')
        endpoints, errors = [], []
        for record in order_srv(targets, random):
            addresses, error = yield _addresses(resolver, record.target, trace, target_step)
            errors.append(error)
            endpoints.extend(Endpoint(a, record.port, record.target) for a in addresses)
        if endpoints:
            return endpoints
        # RFC 6120 3.2.1: with SRV records, the domain's own A record is not
        # a fallback.  The records said where the service is; it is not there.
        raise _not_found(domain, "no SRV target has an address", errors)

    # Step 3: no SRV (or no answer to SRV); the domain itself, on the default port.
    addresses, a_error = yield _addresses(resolver, domain, trace, a_step)
    if addresses:
        return [Endpoint(a, XMPP_SERVER_PORT, domain) for a in addresses]
    # Step 4: nothing.
    reason = "%s and %s" % (
        "no SRV record" if srv_error is None else "SRV query " + _failed(srv_error),
        "no address" if a_error is None else "address query " + _failed(a_error))
    raise _not_found(domain, reason, [srv_error, a_error])


@defer.inlineCallbacks
def _addresses(resolver, name, trace, step):
    """(addresses, the DNS error or None) of one host name, traced."""
    try:
        addresses = yield resolver.lookup_addresses(name)
    except DNSLookupError as e:
        trace.step(step, "A/AAAA %s -> %s" % (name, describe_dns_error(e)))
        return [], e
    trace.step(step, "A/AAAA %s -> %s" % (name, ", ".join(addresses) if addresses else "none"))
    return list(addresses), None


def _failed(error):
    return "timed out" if isinstance(error, DNSTimeoutError) else "failed"


def _not_found(domain, reason, errors):
    """ResolutionTimeout if any query timed out: asking again later may work."""
    if any(isinstance(e, DNSTimeoutError) for e in errors):
        return ResolutionTimeout(domain, reason)
    return DomainNotFound(domain, reason)
