"""
Where ``twistd wavebox`` logs, in which format, from which level.

twistd picks the destination from its own options (``--logfile``,
``--syslog``, ``--nodaemon``), and looks for an ``ILogObserver`` on the
application after the plugin made its service.  wavebox puts one there that
writes to that same destination, in ``--log-format`` (text, or
twisted.logger's JSON: one event per line, for a log collector), and drops
what is below ``--log-level``.  The destination is chosen here rather than
by borrowing twistd's private runner, so that only public Twisted APIs are
used:

- ``--logfile -``, or ``-n`` without ``--logfile``: stdout (what systemd's
  journal collects under ``etc/wavebox.service``);
- ``--logfile PATH`` (daemonized, ``twistd.log`` by default): that file,
  rotated when it reaches :data:`ROTATE_LENGTH` bytes, keeping
  :data:`MAX_ROTATED_FILES` old files (``PATH.1`` is the newest); SIGUSR1
  rotates it at once, as twistd's own does;
- ``--syslog``: syslog, with twistd's ``--prefix``.

An operator's own ``--logger`` is left alone.
"""

import re
import signal
import sys

from twisted.logger import (
    FilteringLogObserver,
    LegacyLogObserverWrapper,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    jsonFileLogObserver,
    textFileLogObserver,
)
from twisted.python import logfile

#: A log file is rotated when it reaches this size...
ROTATE_LENGTH = 10 * 1000 * 1000
#: ...and this many rotated files are kept.
MAX_ROTATED_FILES = 10

FORMATS = ("text", "json")


def destination(twistd_options):
    """
    ``("stdout", None)``, ``("file", path)``, ``("syslog", prefix)``, or None
    when the operator gave twistd a ``--logger`` of their own.
    """
    get = twistd_options.get
    if get("logger"):
        return None
    if get("syslog"):
        return ("syslog", get("prefix") or "twisted")
    path = get("logfile")
    if path == "-" or (not path and get("nodaemon")):
        return ("stdout", None)
    return ("file", path or "twistd.log")


def _file(path, reactor=None):
    log_file = logfile.LogFile.fromFullPath(path, rotateLength=ROTATE_LENGTH,
                                            maxRotatedFiles=MAX_ROTATED_FILES)
    if not signal.getsignal(signal.SIGUSR1):
        def rotate(number, frame):
            from twisted.internet import reactor as running
            (reactor or running).callFromThread(log_file.rotate)
        signal.signal(signal.SIGUSR1, rotate)
    return log_file


def observer(twistd_options, log_level="info", log_format="text"):
    """The observer for twistd's application, or None to keep twistd's own."""
    where = destination(twistd_options)
    if where is None:
        return None
    kind, argument = where
    if kind == "syslog":
        from twisted.python import syslog
        base = LegacyLogObserverWrapper(syslog.SyslogObserver(argument).emit)
    else:
        out = sys.stdout if kind == "stdout" else _file(argument)
        base = (jsonFileLogObserver if log_format == "json" else textFileLogObserver)(out)
    level = LogLevel.levelWithName(log_level)
    return FilteringLogObserver(
        base, [LogLevelFilterPredicate(defaultLogLevel=level), drop_port_chatter])


_PORT_CHATTER = re.compile(r"^(\S+ starting on \d+|\(\w+ Port \d+ Closed\))$")


def drop_port_chatter(event):
    """
    Twisted's own "ConsoleFactory starting on 9876" and "(TCP Port 9876
    Closed)": our "console listening on 127.0.0.1:9876" says it better, and
    names the address.
    """
    text = event.get("log_text") if event.get("log_namespace") == "log_legacy" else None
    if isinstance(text, str) and _PORT_CHATTER.match(text):
        return PredicateResult.no
    return PredicateResult.maybe
