"""
systemd's readiness protocol (sd_notify(3)), for ``Type=notify`` units.

systemd gives the service a datagram socket in ``$NOTIFY_SOCKET`` (a path,
or ``@name`` for the abstract namespace) and waits for ``READY=1`` before it
counts the service as started: so units ordered after wavebox start only
once its ports listen.  ``STOPPING=1`` says a stop has begun, ``STATUS=``
is the line ``systemctl status`` shows.  Without ``$NOTIFY_SOCKET`` (not
under systemd) every call does nothing.
"""

import os
import socket

from twisted.logger import Logger

log = Logger()


def notify(*assignments, environ=None):
    """Send ``KEY=VALUE`` lines to systemd; True if they were sent."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    message = "\n".join(assignments).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(address)
            s.sendall(message)
    except OSError as e:
        log.warn("cannot tell systemd {what} through NOTIFY_SOCKET {address}: {error}",
                 what=assignments[0], address=address.replace("\0", "@"),
                 error=e.strerror or e)
        return False
    return True
