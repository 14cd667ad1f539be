"""
Run in a ``twistd`` child before twistd itself (see tests/helpers.py
``start_twistd_wavebox``): every scrypt call the server makes is reported as
one ``scrypt n=N r=R p=P`` line on stderr, so that a test counts the work a
login costs instead of timing it.  Imports nothing of Twisted, so that
twistd still picks its own reactor.
"""

import hashlib
import sys

MAIN = ("import tests.scrypt_counter as c; c.report_scrypt_calls(); "
        "from twisted.scripts.twistd import run; run()")


def report_scrypt_calls():
    real = hashlib.scrypt

    def scrypt(password, *, salt, n, r, p, maxmem=0, dklen=64):
        sys.stderr.write("scrypt n=%d r=%d p=%d\n" % (n, r, p))
        sys.stderr.flush()
        return real(password, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=dklen)
    hashlib.scrypt = scrypt
