"""
What ``wavebox check DOMAIN`` (:mod:`wavebox.cli.check`) does: find the wave
service of DOMAIN the way the server would (the seed's connection
establishment, :mod:`wavebox.xmpp.discovery`), print every step, and open
an XMPP stream there through STARTTLS and the check of its certificate.  An operator runs it against their own domain to see
what peers will see, or against a peer that does not answer.
"""

import os

from twisted.internet import defer
from twisted.internet.error import DNSLookupError

from wavebox.xmpp.discovery import DiscoveryFailed, WaveServiceDiscovery
from wavebox.xmpp.resolver import DnspythonResolver, DNSTimeoutError, describe_dns_error
from wavebox.xmpp.server import make_check_disco
from wavebox.xmpp.streams import TLSUnavailable


#: A name no zone has (RFC 6761): a live name server answers it at once.
PROBE_NAME = "_xmpp-server._tcp.wavebox-probe.invalid"


def describe_name_server(config):
    return ("name server %s:%d" % config.nameserver) if config.nameserver else \
        "the system's name servers"


@defer.inlineCallbacks
def name_server_trouble(resolver, timeout):
    """
    None when the name server answers at all, else why not.  Without this, a
    dead name server costs one timeout per query of the thirteen steps (half
    a minute) and looks like a domain that does not resolve.
    """
    try:
        yield resolver.lookup_srv(PROBE_NAME)
    except DNSTimeoutError:
        return "does not answer (no reply within %gs)" % (timeout,)
    except DNSLookupError as e:
        return "cannot be asked: %s" % (getattr(e, "reason", "") or e,)
    return None


def xmpp_connect(s2s, local, remote):
    """
    The ``connect`` of :func:`run_check`: a stream to ``remote`` through
    STARTTLS and the check of its certificate against our trust roots, as
    the server's own streams go (``S2SService.negotiate``).  It fires with
    ``(None, what worked)`` or ``(the step that failed, why)``.
    """
    @defer.inlineCallbacks
    def connect(reactor, endpoint, timeout):
        try:
            stream = yield s2s.negotiate((endpoint.host, endpoint.port), local, remote,
                                         getattr(endpoint, "direct_tls", False))
        except TLSUnavailable as e:
            return "STARTTLS", str(e)
        except Exception as e:
            return _failed_step(e, remote)
        try:
            if not stream.tls_active:
                return None, "XMPP stream opened, without TLS (tls_required is off)"
            certificate = stream.xmlstream.transport.getPeerCertificate()
            if certificate is None:
                return None, "TLS, but the peer sent no certificate"
            leaf = certificate.to_cryptography()
            how = "direct TLS (XEP-0368)" if stream.direct_tls else "STARTTLS"
            return None, "%s, certificate of %s verified (%s, issued by %s, expires " \
                         "%s)" % (how, remote, leaf.subject.rfc4514_string(),
                                  leaf.issuer.rfc4514_string(),
                                  leaf.not_valid_after_utc.date().isoformat())
        finally:
            yield stream.close()
    return connect


def _failed_step(error, remote):
    text = str(error)
    if "TLS certificate of" in text:
        return "TLS", text[text.index("TLS certificate of"):]
    if text.startswith("cannot connect"):
        return "connect", text.split(": ", 1)[-1]
    if isinstance(error, defer.TimeoutError):
        return "XMPP", "no stream features within the timeout"
    return "XMPP", text


@defer.inlineCallbacks
def _reach(reactor, endpoints, timeout, connect, lines):
    """
    Steps 1-12 say where the wave service is, not that it can be used there.
    A peer needs an XMPP stream with STARTTLS and a certificate it trusts
    (the seed: "each server ... needs to be able to initiate a connection
    with the other"), so try each address; the first that works is enough.
    None, or the last failure as ``(step, reason)``.
    """
    failure = None
    for endpoint in endpoints:
        step, text = yield connect(reactor, endpoint, timeout)
        lines.append("connect to %s -> %s" % (endpoint, text if step is None
                                              else "%s failed: %s" % (step, text)))
        if step is None:
            return None
        failure = (step, text)
    return failure


@defer.inlineCallbacks
def run_check(reactor, domain, config, out, disco=None, connect=None, discover=None):
    """
    Deferred[int]: the exit status, after the trace and the verdict went to
    ``out``.  ``discover(domain)`` defaults to a discovery of our own; the
    command gives the running server's instead when there is one.
    """
    resolver = DnspythonResolver(nameserver=config.nameserver, timeout=config.dns_timeout)
    out.write("checking %s with %s\n" % (domain, describe_name_server(config)))
    trouble = yield name_server_trouble(resolver, config.dns_timeout)
    if trouble is not None:
        out.write("%s: NOT CHECKED: the %s %s\n" % (domain, describe_name_server(config),
                                                   trouble))
        return 1
    if discover is None:
        if disco is None:
            disco = make_check_disco(config)
        discovery = WaveServiceDiscovery(resolver, disco, clock=reactor,
                                         service_prefix=config.wave_service_prefix)
        discover = discovery.discover
    by = getattr(discover, "by", None)
    if by:
        out.write("discovery by %s\n" % (by,))
    status = None
    try:
        result = yield discover(domain)
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
        if connect is None:
            connect = default_connect(config, result.jid)
        failure = yield _reach(reactor, result.endpoints, config.dns_timeout, connect, lines)
        status = 0 if failure is None else 1
        if failure is not None:
            verdict += ", but %s fails there (%s)" % failure
        yield defer.maybeDeferred(getattr(connect, "close", lambda: None))
    for line in lines:
        out.write("  %s\n" % (line,))
    out.write(verdict + "\n")
    return status


def default_connect(config, remote):
    """
    :func:`xmpp_connect` on an S2S service of our own that does not listen:
    our configured identity (domain, certificate) when we can use it, else a
    throwaway one, and our trust roots (``trusted_ca``, else the system's).
    """
    import shutil
    import tempfile

    from wavebox.xmpp.resolver import DnspythonResolver as Resolver
    from wavebox.xmpp.server import service_from_config

    resolver = Resolver(config.nameserver, config.dns_timeout)
    scratch = None
    s2s = None
    if config.domains:
        try:
            s2s = service_from_config(config, resolver, port=None)
        except Exception:
            s2s = None          # our key is not ours to read here: a stranger's identity
    if s2s is None:
        from wavebox.config import Config
        scratch = tempfile.mkdtemp(prefix="wavebox-check-")
        values = config.as_dict()
        values.update(domain=["wavebox-check.invalid"], data_dir=scratch,
                      certificate=None, private_key=None)
        s2s = service_from_config(Config(values), resolver, port=None)
    local = s2s.domains[1] if len(s2s.domains) > 1 else s2s.domains[0]
    connect = xmpp_connect(s2s, local, remote)

    def close():
        d = defer.maybeDeferred(s2s.stopService)
        if scratch is not None:
            d.addBoth(lambda result: (shutil.rmtree(scratch, ignore_errors=True), result)[1])
        return d
    connect.close = close
    s2s.startService()
    return connect


# --- wavebox check --self ---------------------------------------------------------

class _Report:
    """Lines under headings, with the problems (federation breaks) and warnings counted."""

    def __init__(self, out):
        self.out = out
        self.problems = []
        self.warnings = []

    def line(self, text):
        self.out.write("  %s\n" % (text,))

    def problem(self, text):
        self.problems.append(text)
        self.line("PROBLEM: " + text)

    def warning(self, text):
        self.warnings.append(text)
        self.line("warning: " + text)


@defer.inlineCallbacks
def _records(resolver, name, report):
    """(SRV records or [], addresses or []) of ``name``, each query reported."""
    from wavebox.xmpp.resolver import SRVRecord, srv_name
    try:
        srv = yield resolver.lookup_srv(srv_name(name))
    except DNSLookupError as e:
        report.line("SRV %s -> %s" % (srv_name(name), describe_dns_error(e)))
        srv = []
    else:
        report.line("SRV %s -> %s" % (srv_name(name), ", ".join(str(r) for r in srv)
                                      if srv else "none"))
    tls_name = srv_name(name, direct_tls=True)
    try:
        tls_srv = yield resolver.lookup_srv(tls_name)
    except DNSLookupError as e:
        report.line("SRV %s -> %s" % (tls_name, describe_dns_error(e)))
        tls_srv = []
    else:
        report.line("SRV %s -> %s" % (tls_name, ", ".join(str(r) for r in tls_srv)
                                      + " (direct TLS, XEP-0368)" if tls_srv else "none"))
    srv = list(srv) + [SRVRecord(r.priority, r.weight, r.port, r.target, True)
                       for r in tls_srv if not r.is_root]
    try:
        addresses = yield resolver.lookup_addresses(name)
    except DNSLookupError as e:
        report.line("A/AAAA %s -> %s" % (name, describe_dns_error(e)))
        addresses = []
    else:
        report.line("A/AAAA %s -> %s" % (name, ", ".join(addresses) if addresses else "none"))
    return list(srv), list(addresses)


@defer.inlineCallbacks
def _dns_of(resolver, config, domain, report):
    """
    The seed's "Recommended DNS Configuration" for a domain we host (its
    points 1, 3 and 5), each record reported; the endpoints peers will use
    for the wave service.
    """
    from wavebox.xmpp.resolver import XMPP_SERVER_PORT, Endpoint, srv_name
    jid = config.service_jid(domain)
    report.out.write("DNS for %s and its wave service %s:\n" % (domain, jid))
    endpoints = {}
    for name, point in ((domain, 1), (jid, 3)):
        srv, addresses = yield _records(resolver, name, report)
        targets = [r for r in srv if not r.is_root]
        found = []
        for record in targets:
            try:
                target_addresses = yield resolver.lookup_addresses(record.target)
            except DNSLookupError as e:
                target_addresses = []
                report.line("A/AAAA %s (SRV target) -> %s" % (record.target,
                                                             describe_dns_error(e)))
            else:
                report.line("A/AAAA %s (SRV target) -> %s" % (
                    record.target, ", ".join(target_addresses) or "none"))
            found.extend(Endpoint(a, record.port, record.target, record.direct_tls)
                         for a in target_addresses)
        if srv and not targets:
            report.problem('SRV %s has the target ".": it says there is no XMPP service'
                           % (srv_name(name),))
        elif not srv:
            report.warning("no SRV record %s (the seed's recommended record %d%s); peers "
                           "fall back to %s's A/AAAA record on port %d" % (
                               srv_name(name), point,
                               ": our disco item is %s" % (jid,) if point == 3 else "",
                               name, XMPP_SERVER_PORT))
            found = [Endpoint(a, XMPP_SERVER_PORT, name) for a in addresses]
        elif not found:
            report.problem("no SRV target of %s has an address" % (srv_name(name),))
        if not found:
            report.problem("peers cannot find %s: no SRV target with an address, and no "
                           "A/AAAA record" % (name,))
        endpoints[name] = found
    return endpoints[jid] or endpoints[domain]


def _certificate_report(config, report):
    """Names, chain and expiry of the certificate our streams present."""
    import datetime

    from wavebox import certpath
    from wavebox.xmpp import certs
    names = []
    for domain in config.domains:
        names += [domain, config.service_jid(domain)]
    if config.certificate:
        path = config.certificate
    else:
        path = None
        for candidate in (certs.imported_files(config.data_dir, config.domains[0])[0],
                          os.path.join(config.data_dir, certs.SELF_SIGNED_DIR,
                                       certs.SELF_SIGNED_CERT)):
            if os.path.isfile(candidate):
                path = candidate
                break
    report.out.write("certificate:\n")
    if path is None:
        report.warning("none configured and none made yet: the server makes a self-signed "
                       "one at start-up, which peers that check certificates refuse")
        return
    try:
        with open(path, "rb") as f:
            chain = certpath.load_pem(f.read())
    except (OSError, certpath.PathError) as e:
        report.problem("cannot read %s: %s" % (path, getattr(e, "strerror", None) or e))
        return
    leaf = chain[0]
    has = certs.certificate_names(leaf)
    report.line("%s: %s, names %s, issued by %s" % (
        path, leaf.subject.rfc4514_string(), ", ".join(has) or "nothing",
        leaf.issuer.rfc4514_string()))
    missing = [n for n in names if not any(certs.name_matches(p, n) for p in has)]
    if missing:
        report.problem("the certificate does not name %s: peers that check certificates "
                       "refuse our streams for those" % (", ".join(missing),))
    now = datetime.datetime.now(datetime.timezone.utc)
    left = leaf.not_valid_after_utc - now
    if left.total_seconds() <= 0:
        report.problem("it expired on %s" % (leaf.not_valid_after_utc.date().isoformat(),))
    elif left.days < 14:
        report.warning("it expires on %s, in %d day(s)" % (
            leaf.not_valid_after_utc.date().isoformat(), left.days))
    else:
        report.line("valid until %s (%d days)" % (
            leaf.not_valid_after_utc.date().isoformat(), left.days))
    for label, anchors in (("the system trust store (what most peers use)",
                            certpath.system_anchors()),
                           ("trusted_ca %s" % (config.trusted_ca,), None)):
        if anchors is None:
            if not config.trusted_ca:
                continue
            anchors = certpath.trust_anchors(config.trusted_ca)
        try:
            certpath.validate_path(chain, anchors)
        except certpath.PathError as e:
            text = "the chain is not trusted by %s: %s" % (label, e)
            if "system" in label:
                report.warning(text + "; peers that check certificates refuse it")
            else:
                report.line(text)
        else:
            report.line("the chain verifies against %s" % (label,))


@defer.inlineCallbacks
def run_self_check(reactor, config, out, connect_factory=None):
    """
    ``wavebox check --self``: what ``prosodyctl check`` does for our own
    domains -- the configuration, the DNS records the seed recommends (and
    which are missing), the certificate (names, chain, expiry), and whether
    the addresses DNS gives accept an XMPP stream with STARTTLS there.
    Deferred[int]: 0 when nothing stops federation, 1 otherwise.
    """
    report = _Report(out)
    out.write("checking our own domains %s (config %s)\n" % (
        ", ".join(config.domains), config.config or "none: the defaults"))
    if not config.domains:
        out.write("no hosted domain: give --config (or --domain)\n")
        return 1
    resolver = DnspythonResolver(nameserver=config.nameserver, timeout=config.dns_timeout)
    report.line("S2S listens on %s:%d; asking %s" % (
        config.s2s_interface or "*", config.s2s_port, describe_name_server(config)))
    trouble = yield name_server_trouble(resolver, config.dns_timeout)
    if trouble is not None:
        report.problem("the %s %s: DNS cannot be checked" % (describe_name_server(config),
                                                             trouble))
    else:
        for domain in config.domains:
            endpoints = yield _dns_of(resolver, config, domain, report)
            jid = config.service_jid(domain)
            if endpoints:
                out.write("reaching %s where DNS points:\n" % (jid,))
                connect = (connect_factory or default_connect)(config, jid)
                lines = []
                try:
                    failure = yield _reach(reactor, endpoints, config.dns_timeout, connect,
                                           lines)
                finally:
                    yield defer.maybeDeferred(getattr(connect, "close", lambda: None))
                for line in lines:
                    report.line(line)
                if failure is not None:
                    report.problem("%s does not work at any address DNS gives (%s: %s)"
                                   % (jid, failure[0], failure[1]))
    _certificate_report(config, report)
    if report.problems:
        out.write("%s: %d problem(s), %d warning(s)\n" % (
            ", ".join(config.domains), len(report.problems), len(report.warnings)))
        return 1
    out.write("%s: OK%s\n" % (", ".join(config.domains), " (%d warning(s))" % (
        len(report.warnings),) if report.warnings else ""))
    return 0
