"""
wavebox's configuration: ``etc/wavebox.conf`` (an INI file) overridden by the
command line, validated once at start-up.

Every option has one name.  On the command line it is ``--s2s-port``; in the
config file it is ``s2s_port`` (in the ``[wavebox]`` section).  Operators'
scripts rely on these names, so they never change.  A bad value stops start-up
with one line that names the option (:class:`ConfigError`).

This module knows nothing of Twisted services; :mod:`wavebox.service` turns a
:class:`Config` into running services.
"""

import configparser
import ipaddress
import os
from dataclasses import dataclass

from twisted.python import usage


class ConfigError(Exception):
    """A configuration value is wrong.  The message names the option."""


# --- value parsers ----------------------------------------------------------
# Each takes the option's textual value and returns the typed value or raises
# ValueError with a short reason; the caller adds the option name.

def _text(value):
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _duration_or_never(value):
    """Seconds, or with a unit (90s, 30m, 12h, 7d, 2w); 'never' or 'off': None."""
    v = str(value).strip().lower()
    if v in ("never", "off", "none"):
        return None
    unit = _UNITS.get(v[-1:]) if v else None
    try:
        seconds = float(v[:-1]) * unit if unit else float(v)
    except ValueError:
        raise ValueError("not a duration (seconds, or 90s, 30m, 12h, 7d, 2w, or never): %r"
                         % (value,))
    if seconds <= 0:
        raise ValueError("must be positive, or never")
    return seconds


def _path_or_off(value):
    """A path, or '' (or 'off') for none."""
    value = value.strip()
    return "" if value.lower() in ("", "off", "none") else value


def _domain(value):
    value = value.strip().rstrip(".").lower()
    if not value or len(value) > 253:
        raise ValueError("not a domain name: %r" % (value,))
    for label in value.split("."):
        if not label or len(label) > 63 or label.startswith("-") or label.endswith("-"):
            raise ValueError("not a domain name: %r" % (value,))
        if not all(c.isalnum() or c == "-" for c in label):
            raise ValueError("not a domain name: %r" % (value,))
    return value


def _label(value):
    """One DNS label, lower case (peers compare certificate names case-sensitively)."""
    value = value.strip().lower()
    if (not value or len(value) > 63 or value.startswith("-") or value.endswith("-")
            or not all(c.isalnum() or c == "-" for c in value)):
        raise ValueError("not a DNS label: %r" % (value,))
    return value


def _domains(value):
    """A comma- or space-separated list of domains (the config file form)."""
    parts = [p for p in value.replace(",", " ").split() if p]
    if not parts:
        raise ValueError("must name at least one domain")
    return [_domain(p) for p in parts]


def _port(value):
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ValueError("not a port number: %r" % (value,))
    if not 0 <= port <= 65535:
        raise ValueError("not a port number: %r" % (value,))
    return port


def _interface(value):
    value = value.strip()
    if value in ("", "*"):
        return ""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("not an IP address: %r" % (value,))
    return value


def _yes_no(value):
    v = str(value).strip().lower()
    if v in ("yes", "true", "on", "1"):
        return True
    if v in ("no", "false", "off", "0"):
        return False
    raise ValueError("must be yes or no, not %r" % (value,))


def _host_port(default_port):
    def parse(value):
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        host, port = value, default_port
        if value.startswith("["):
            host, _, rest = value[1:].partition("]")
            if rest.startswith(":"):
                port = _port(rest[1:])
        elif value.count(":") == 1:
            host, p = value.split(":")
            port = _port(p)
        if not host:
            raise ValueError("no host in %r" % (value,))
        return (host, port)
    return parse


def _positive_float(value):
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError("not a number: %r" % (value,))
    if f <= 0:
        raise ValueError("must be positive, not %r" % (value,))
    return f


def _positive_int(value):
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError("not a whole number: %r" % (value,))
    if n <= 0:
        raise ValueError("must be positive, not %r" % (value,))
    return n


def _byte_size(value):
    """A number of bytes: ``65536``, ``64K``, ``4M`` (K and M are 1024 and 1024**2)."""
    text = str(value).strip().upper().rstrip("B")
    scale = 1
    if text[-1:] in ("K", "M"):
        scale = 1024 if text[-1] == "K" else 1024 * 1024
        text = text[:-1]
    try:
        n = int(text)
    except ValueError:
        raise ValueError("not a size in bytes (such as 65536, 64K or 4M): %r" % (value,))
    if n <= 0:
        raise ValueError("must be positive, not %r" % (value,))
    return n * scale


def _store_url(value):
    from wavebox.store import parse_store_url
    value = value.strip()
    parse_store_url(value)
    return value


def _log_format(value):
    v = value.strip().lower()
    if v not in ("text", "json"):
        raise ValueError("must be text or json")
    return v


def _log_level(value):
    v = value.strip().lower()
    if v not in ("debug", "info", "warn", "error", "critical"):
        raise ValueError("must be one of debug, info, warn, error, critical")
    return v


@dataclass(frozen=True)
class Option:
    name: str                 # command-line spelling, without the dashes
    parse: object             # text -> value, raising ValueError
    default: object
    help: str
    short: str = None
    repeatable: bool = False  # may be given several times; collects a list
    flag: bool = False        # takes no value on the command line (means "yes")
    aliases: tuple = ()       # other command-line spellings

    @property
    def key(self):
        return self.name.replace("-", "_")


# The fixed names come first (issue 3); later issues append theirs.
OPTIONS = [
    Option("config", _text, None, "INI file to read first (section [wavebox]); "
           "command-line options override it", short="c"),
    Option("domain", _domain, [], "a domain this server hosts (repeat for several)",
           short="d", repeatable=True),
    Option("data-dir", _text, "wavebox-data", "directory for the store, keys and "
           "generated certificates"),
    Option("s2s-interface", _interface, "", "address to listen on for XMPP "
           "server-to-server streams ('' or * = all)"),
    Option("s2s-port", _port, 5269, "port for XMPP server-to-server streams"),
    Option("certificate", _text, None, "PEM certificate chain for the hosted "
           "domains, leaf first (default: a self-signed one in the data dir)"),
    Option("private-key", _text, None, "PEM private key of --certificate"),
    Option("trusted-ca", _text, None, "PEM file of CA certificates to trust for "
           "peers (default: the system store)"),
    Option("tls-required", _yes_no, True, "refuse S2S streams without STARTTLS "
           "and a verified certificate or dialback (yes|no; 'no' is for tests only)"),
    Option("nameserver", _host_port(53), None, "DNS server HOST[:PORT] to ask "
           "instead of the system's resolvers"),
    Option("xmpp-server-ping", _domain, [], "send the FedOne ping to this domain "
           "at start-up (repeatable; --xmpp_server_ping also works)", repeatable=True),
    Option("dialback-secret", _text, None, "secret for XEP-0185 dialback keys "
           "(default: generated and kept in the data dir)"),
    Option("wave-service-prefix", _label, "wave", "the wave service JID of DOMAIN "
           "is PREFIX.DOMAIN (advertised in disco)"),
    Option("dns-timeout", _positive_float, 5.0, "seconds to wait for one DNS answer"),
    Option("log-level", _log_level, "info", "least severe log level to print"),
    Option("log-format", _log_format, "text", "text, or json: twisted.logger's JSON, "
           "one event per line, for a log collector (--logformat also works)",
           aliases=("logformat",)),
    Option("store", _store_url, "sqlite:wavebox.sqlite3", "where wavelets are kept: "
           "sqlite:PATH (relative to --data-dir) or memory: (lost at exit; tests only)"),
    Option("snapshot-interval", _positive_int, 100, "keep a wavelet snapshot every "
           "this many deltas, so opening a long wavelet replays only the rest"),
]

# Issue 10: capacity.
OPTIONS += [
    Option("max-loaded-wavelets", _positive_int, 10000, "keep at most this many wavelets "
           "in memory; the least recently used idle ones are dropped and loaded again "
           "from the store when next used"),
    Option("wavelet-idle-time", _positive_float, 600.0, "seconds a wavelet may stay "
           "unused in memory before it is dropped"),
]

# Issue 4: the wave server core and the console.
OPTIONS += [
    Option("console-interface", _interface, "127.0.0.1", "address the console "
           "listens on ('' or * = all; keep it on localhost unless you mean it)"),
    Option("console-port", _port, 9876, "port of the telnet-style console "
           "(0 = any free port, logged at start-up)"),
    # Component mode (issue 6): an XMPP server does S2S, we are its XEP-0114 component.
    Option("component", _host_port(5347), None, "run as an XEP-0114 component of the XMPP "
           "server at HOST[:PORT] (its component port, 5347 by default) instead of "
           "doing S2S ourselves"),
    Option("component-secret", _text, None, "the shared secret of --component (the XMPP "
           "server's component_secret)"),
    Option("component-jid", _domain, None, "the component's JID, as configured in the XMPP "
           "server (default: the wave service JID, PREFIX.DOMAIN)"),
]

# Issue 13: running it for real.
OPTIONS += [
    Option("metrics-interface", _interface, "127.0.0.1", "address of the HTTP listener "
           "of /metrics (Prometheus) and /health; keep it private"),
    Option("metrics-port", _port, None, "port of /metrics and /health (off unless given; "
           "0 = any free port, logged)"),
    Option("admin-socket", _path_or_off, "admin.sock", "UNIX socket (relative to "
           "--data-dir) where 'wavebox status', 'users', 'waves' and 'outbox' reach the "
           "running server; mode 0600 ('' or off: none)"),
]

# Issue 14: the web client.
OPTIONS += [
    Option("web-interface", _interface, "127.0.0.1", "address the web client listens on "
           "('' or * = all; keep it on localhost, or behind a TLS proxy, unless you mean it)"),
    Option("web-port", _port, 9898, "port of the web client, http://INTERFACE:PORT/ "
           "(0 = off)"),
    Option("web-max-sessions", _positive_int, 1000, "web sessions (logged-in browsers) at "
           "once; a login beyond them is refused until one logs out or expires"),
    Option("web-session-idle", _positive_float, 7 * 86400.0, "seconds a web session may go "
           "unused (no page, no WebSocket) before it ends"),
    Option("web-queue-limit", _positive_int, 1000, "messages one browser's WebSocket may "
           "have waiting to be handled; one that sends more is closed"),
    Option("web-output-limit", _byte_size, 4 * 1024 * 1024, "bytes one browser's WebSocket "
           "may have unsent because the browser does not read; then it is closed"),
]

# Issue 9: logins (the console's, and any other front end's) and the console's limits.
OPTIONS += [
    Option("login-account-failures", _positive_int, 5, "failed logins of one account "
           "before each further try must wait (1 s, doubling up to --login-backoff-max)"),
    Option("login-ip-failures", _positive_int, 20, "failed logins from one client address "
           "(an IPv6 client: its /64), all accounts together, before each further try "
           "must wait"),
    Option("login-backoff-max", _positive_float, 300.0, "longest wait, in seconds, "
           "between two login tries after repeated failures"),
    Option("console-max-sessions", _positive_int, 100, "console sessions open at once; "
           "one more is told the console is full and closed"),
    Option("console-max-sessions-per-ip", _positive_int, 20, "console sessions open at "
           "once from one client address"),
    Option("console-login-timeout", _positive_float, 60.0, "seconds a console session "
           "may stay open without logging in"),
    Option("console-idle-timeout", _positive_float, 3600.0, "seconds a logged-in console "
           "session may go without a line typed before it is closed"),
    Option("console-line-rate", _positive_float, 20.0, "lines a second one console "
           "session is served, after a burst of --console-line-burst; faster lines wait"),
    Option("console-line-burst", _positive_int, 200, "lines one console session may send "
           "at once (a paste) before --console-line-rate applies"),
    Option("console-input-limit", _byte_size, 256 * 1024, "bytes of typed lines one "
           "console session may have waiting; a session that sends more is closed"),
    Option("console-output-limit", _byte_size, 4 * 1024 * 1024, "bytes one console "
           "session may have unsent because its client does not read; then it is closed"),
]

# Issue 9: what a stranger may hold of the XMPP side (docs/xmpp.rst, "Limits").
OPTIONS += [
    Option("xmpp-max-stanza-size", _byte_size, 512 * 1024, "bytes one stanza may have "
           "from an authenticated peer, text and whitespace included; a bigger one is "
           "the stream error policy-violation"),
    Option("xmpp-max-unauthenticated-stanza-size", _byte_size, 10 * 1024, "bytes the "
           "stream header and each element may have before the peer is authenticated "
           "(before STARTTLS and dialback)"),
    Option("xmpp-max-depth", _positive_int, 100, "levels elements may nest in one "
           "stanza; deeper is the stream error policy-violation"),
    Option("s2s-max-streams", _positive_int, 1000, "incoming S2S streams open at once; "
           "one more gets the stream error resource-constraint"),
    Option("s2s-max-unauthenticated-per-ip", _positive_int, 10, "incoming S2S streams "
           "from one client address (an IPv6 client: its /64) that have not yet "
           "authenticated a domain"),
    Option("s2s-max-pending-bytes", _byte_size, 4 * 1024 * 1024, "bytes we may have "
           "written to a peer that does not read, beyond the socket's own buffer; then "
           "its connection is dropped"),
    Option("s2s-unauthenticated-timeout", _positive_float, 30.0, "seconds an incoming S2S "
           "stream may take to authenticate a domain (connection-timeout after that)"),
    Option("s2s-idle-timeout", _duration_or_never, 600.0, "seconds (or 10m, 1h...; never) "
           "an S2S stream may carry nothing before it is closed with a stream close; a "
           "route opens a new one when it has something to send"),
]

# Issue 5: the wave federation protocol.
OPTIONS += [
    Option("verify-signatures", _yes_no, True, "check the signature of every delta "
           "another server sends, against a certificate chain that leads to "
           "--trusted-ca (yes|no; FedOne's --waveserver_disable_verification is 'no')"),
    Option("federation-retry-max", _positive_float, 300.0, "longest wait, in "
           "seconds, between two attempts to deliver updates to an unreachable peer"),
    Option("federation-give-up", _duration_or_never, 7 * 86400.0, "after this long "
           "unreachable (seconds, or 12h, 7d...; never), a destination's queued updates "
           "are dropped with one log line and shown in wavebox status"),
]


def options_by_key():
    return {o.key: o for o in OPTIONS}


class Config:
    """
    Validated configuration values, as attributes named by config key
    (``config.s2s_port``).  Built by :func:`load`.
    """

    #: How the config file was found (see :func:`find_config_file`), for the log.
    config_source = None

    def __init__(self, values):
        self.__dict__.update(values)

    def as_dict(self):
        return dict(self.__dict__)

    def __repr__(self):
        return "Config(%r)" % (self.__dict__,)

    @property
    def domains(self):
        return list(self.domain)

    def service_jid(self, domain):
        """The JID of the wave service of a hosted domain (``wave.DOMAIN``)."""
        return "%s.%s" % (self.wave_service_prefix, domain)


def _convert(option, raw, where):
    """Parse one textual value, naming the option in any error."""
    try:
        if option.repeatable and where == "config":
            parse = option.parse
            parts = [p for p in str(raw).replace(",", " ").split() if p]
            return [parse(p) for p in parts]
        return option.parse(raw)
    except ValueError as e:
        name = ("--" + option.name) if where == "command line" else option.key
        raise ConfigError("%s: %s (%s)" % (name, e, where))


def read_config_file(path):
    """Read the ``[wavebox]`` section of an INI file into {key: text}."""
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as e:
        raise ConfigError("--config: cannot read %s: %s" % (path, e.strerror))
    except configparser.Error as e:
        raise ConfigError("--config: %s is not a valid INI file: %s" % (
            path, str(e).splitlines()[0]))
    if not parser.has_section("wavebox"):
        raise ConfigError("--config: %s has no [wavebox] section" % (path,))
    known = options_by_key()
    values = {}
    for key, text in parser.items("wavebox"):
        key = key.replace("-", "_")
        if key not in known or key == "config":
            import difflib
            near = difflib.get_close_matches(key, [k for k in known if k != "config"], n=1)
            raise ConfigError("%s: unknown option in %s%s" % (
                key, path, " (did you mean %s?)" % (near[0],) if near else ""))
        values[key] = text
    return values


#: A packaged wavebox's configuration, read when present and no other is named.
SYSTEM_CONFIG = "/etc/wavebox/wavebox.conf"


def find_config_file(given, environ=None):
    """
    The config file the server and every ``wavebox`` command read:
    ``--config``, else ``$WAVEBOX_CONFIG``, else :data:`SYSTEM_CONFIG` if it
    exists, else none (the defaults).  ``(path, where it came from)``.
    """
    environ = os.environ if environ is None else environ
    if given.get("config"):
        return given["config"], "--config"
    if environ.get("WAVEBOX_CONFIG"):
        return environ["WAVEBOX_CONFIG"], "WAVEBOX_CONFIG"
    if os.path.isfile(SYSTEM_CONFIG):
        return SYSTEM_CONFIG, "the system's config file"
    return None, None


def discover(cli_values, environ=None, need_domain=True):
    """:func:`load`, with the config file found by :func:`find_config_file`."""
    path, where = find_config_file(cli_values, environ)
    values = dict(cli_values)
    if path:
        values["config"] = path
    config = load(values, need_domain=need_domain)
    config.config_source = where
    return config


def load(cli_values, environ=None, need_domain=True):
    """
    Build a :class:`Config` from command-line values (``{key: raw}``, only those
    given) on top of the config file (if ``config`` is among them) on top of
    the defaults.  Raises :class:`ConfigError`.  ``need_domain=False`` is for
    the commands that read the store or the network but host nothing
    (``wavebox status``, ``check``, ``backup``).
    """
    known = options_by_key()
    result = {}
    for key, option in known.items():
        result[key] = list(option.default) if option.repeatable else option.default
    path = cli_values.get("config")
    if path:
        for key, text in read_config_file(path).items():
            result[key] = _convert(known[key], text, "config")
        result["config"] = path
    for key, raw in cli_values.items():
        if key == "config":
            continue
        option = known[key]
        if option.repeatable:
            result[key] = [_convert(option, r, "command line") for r in raw]
        else:
            result[key] = _convert(option, raw, "command line")
    return _check(Config(result), need_domain)


def _check(config, need_domain=True):
    """Cross-option checks, after every value has been parsed."""
    if need_domain and not config.domain:
        raise ConfigError("--domain: no hosted domain; give --domain DOMAIN "
                          "or 'domain = ...' in the config file")
    seen = set()
    for d in config.domain:
        if d in seen:
            raise ConfigError("--domain: %s is given twice" % (d,))
        seen.add(d)
    if bool(config.certificate) != bool(config.private_key):
        raise ConfigError("--private-key: --certificate and --private-key go "
                          "together; give both or neither")
    _check_component(config)
    for key in ("certificate", "private_key", "trusted_ca"):
        path = getattr(config, key)
        if path and not os.path.isfile(path):
            raise ConfigError("--%s: no such file: %s" % (key.replace("_", "-"), path))
    return config


def _check_component(config):
    """Component mode needs its secret, and serves exactly one domain."""
    if not config.component:
        for key in ("component_secret", "component_jid"):
            if getattr(config, key):
                raise ConfigError("--%s: only meaningful with --component HOST[:PORT]"
                                  % (key.replace("_", "-"),))
        return
    if not config.component_secret:
        raise ConfigError("--component-secret: component mode needs the secret the "
                          "XMPP server has for this component")
    if len(config.domain) != 1:
        raise ConfigError("--domain: component mode serves exactly one domain, not %d"
                          % (len(config.domain),))
    if not config.component_jid:
        config.component_jid = config.service_jid(config.domain[0])


# --- twistd / command-line glue ----------------------------------------------

class Options(usage.Options):
    """
    ``twistd wavebox`` options.  Built from :data:`OPTIONS`, so that the help,
    the config keys and the validation can never disagree.
    """

    synopsis = "[options]"
    longdesc = ("A standalone federated Wave server.  Options may also be set "
                "in the [wavebox] section of the --config file, with '_' for "
                "'-'; the command line wins.")

    def __init__(self):
        self.given = {}
        usage.Options.__init__(self)

    def _make_handler(option):
        def handler(self, value=None):
            if option.flag:
                value = "yes"
            if option.repeatable:
                self.given.setdefault(option.key, []).append(value)
            else:
                self.given[option.key] = value
        default = option.default
        if isinstance(default, bool):
            default = "yes" if default else "no"
        handler.__doc__ = option.help + (
            " [default: %s]" % (default,) if default not in (None, [], "") else "")
        return handler

    for _o in OPTIONS:
        # The short form is the same function, so that --help shows "-c, --config=".
        locals()["opt_" + _o.name.replace("-", "_")] = _make_handler(_o)
        if _o.short:
            locals()["opt_" + _o.short] = locals()["opt_" + _o.name.replace("-", "_")]
    del _o, _make_handler

    def parseOptions(self, options=None):
        # FedOne's flags were spelt with '_' (--xmpp_server_ping=...), and so
        # are our config keys: accept that spelling for every long option.
        if options is None:
            import sys
            options = sys.argv[1:]
        aliases = {"--" + a: "--" + o.name for o in OPTIONS for a in o.aliases}
        fixed = []
        for arg in options:
            if arg.startswith("--"):
                name, eq, value = arg.partition("=")
                name = aliases.get(name, name.replace("_", "-"))
                arg = name + eq + value
            fixed.append(arg)
        try:
            return usage.Options.parseOptions(self, fixed)
        except usage.UsageError as e:
            # twistd would print its whole usage text above the one line
            # that matters; a bad value (ConfigError) is one line too.
            import sys
            sys.stderr.write("wavebox: %s ('twistd wavebox --help' lists the options)\n"
                             % (e,))
            raise SystemExit(2)

    def config(self):
        """The validated :class:`Config`; raises :class:`ConfigError`."""
        return discover(self.given)
