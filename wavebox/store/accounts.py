"""
Password hashes of console accounts: scrypt (RFC 7914) with a random salt.

A stored hash is one string that carries its own parameters, so that they can
be raised later without invalidating the accounts made before::

    scrypt$N$r$p$SALT$HASH        (SALT and HASH in unpadded base64)

Hashing is deliberately slow (a fifth of a second and 32 MiB of
memory with the defaults); server code calls :func:`verify_password_in_thread` so that a login
never stalls the reactor.
"""

import base64
import hashlib
import hmac
import os

SCHEME = "scrypt"

# N=2**15, r=8, p=3: one of the equivalent settings OWASP's password storage
# cheat sheet gives as the minimum for scrypt (32 MiB of memory per hash).
DEFAULT_N = 2 ** 15
DEFAULT_R = 8
DEFAULT_P = 3
SALT_BYTES = 16
HASH_BYTES = 32

# A stored string may ask for more than this much memory only if someone
# edited the database; refuse rather than exhaust the machine.
_MAX_MEMORY = 1 << 30


def _b64(data):
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text):
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(password, salt, n, r, p, length):
    if isinstance(password, str):
        password = password.encode("utf-8")
    memory = 128 * r * n + 128 * r * p + (1 << 20)
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=length,
                          maxmem=memory)


def hash_password(password, n=DEFAULT_N, r=DEFAULT_R, p=DEFAULT_P):
    """The string to store for ``password``; a fresh random salt every time."""
    if not password:
        raise ValueError("a password must not be empty")
    salt = os.urandom(SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p, HASH_BYTES)
    return "%s$%d$%d$%d$%s$%s" % (SCHEME, n, r, p, _b64(salt), _b64(digest))


def dummy_hash(n=DEFAULT_N, r=DEFAULT_R, p=DEFAULT_P):
    """
    A well-formed hash that no password matches (its digest is random, not
    computed), with the given parameters: checking a password against it
    costs what checking one against an account made with them costs.  A
    login for a user who does not exist checks against one of these, so
    that timing does not tell which users exist.
    """
    return "%s$%d$%d$%d$%s$%s" % (SCHEME, n, r, p, _b64(os.urandom(SALT_BYTES)),
                                  _b64(os.urandom(HASH_BYTES)))


def _parse(stored):
    parts = stored.split("$") if isinstance(stored, str) else []
    if len(parts) != 6 or parts[0] != SCHEME:
        raise ValueError("not a scrypt password hash")
    n, r, p = (int(x) for x in parts[1:4])
    salt, digest = _unb64(parts[4]), _unb64(parts[5])
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or not digest:
        raise ValueError("bad scrypt parameters")
    if 128 * r * n > _MAX_MEMORY or p > 16:
        raise ValueError("scrypt parameters too costly")
    return n, r, p, salt, digest


def verify_password(password, stored):
    """
    True if ``password`` matches the ``stored`` hash.  The comparison takes the
    same time wherever the digests differ; a malformed stored string is a
    mismatch, never an exception.
    """
    try:
        n, r, p, salt, digest = _parse(stored)
    except (ValueError, TypeError):
        return False
    if not password:
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(digest)), digest)


def needs_rehash(stored, n=DEFAULT_N, r=DEFAULT_R, p=DEFAULT_P):
    """True if ``stored`` was made with weaker parameters than the current ones."""
    try:
        sn, sr, sp, _, _ = _parse(stored)
    except (ValueError, TypeError):
        return True
    return sn < n or sr < r or sp < p


def hash_password_in_thread(password):
    """:func:`hash_password` on the reactor's thread pool; a Deferred of the string."""
    from twisted.internet import threads
    return threads.deferToThread(hash_password, password)


def verify_password_in_thread(password, stored):
    """:func:`verify_password` on the reactor's thread pool; a Deferred of the bool."""
    from twisted.internet import threads
    return threads.deferToThread(verify_password, password, stored)
