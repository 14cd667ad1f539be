"""
``wavebox cert import DOMAIN [DIR]``: take the certificate and key an ACME
client (certbot, acme.sh, ...) keeps for DOMAIN, as ``prosodyctl cert
import`` does, and put them where the server looks (``DATA_DIR/tls``).
"""

import argparse
import sys

from wavebox.cli.common import fail, load_config, server_options
from wavebox.config import ConfigError, options_by_key
from wavebox.xmpp import certs


def parser():
    p = argparse.ArgumentParser(
        prog="wavebox cert",
        parents=[server_options("config", "data-dir", "domain")],
        description="import: copy DOMAIN's certificate chain and key from an ACME "
                    "client's directory (default %s: DIR/DOMAIN/fullchain.pem and "
                    "privkey.pem, or DOMAIN.crt/DOMAIN.key) into DATA_DIR/tls, after "
                    "checking that the certificate names DOMAIN, is in date and matches "
                    "the key.  The server uses it at its next start unless certificate/"
                    "private_key are set in its config.  For a renewal hook: certbot "
                    "--deploy-hook 'wavebox cert import DOMAIN && systemctl restart "
                    "wavebox'." % (certs.ACME_LIVE,),
        epilog="The key must be RSA: it also signs wave deltas (SHA1withRSA).")
    p.add_argument("action", choices=("import",))
    p.add_argument("target", metavar="DOMAIN", help="a hosted domain")
    p.add_argument("directory", nargs="?", metavar="DIR", default=certs.ACME_LIVE,
                   help="the ACME client's directory (default %s)" % (certs.ACME_LIVE,))
    return p


def main(argv, out=None):
    out = out or sys.stdout
    args = parser().parse_args(argv)
    try:
        domain = options_by_key()["domain"].parse(args.target)
        config = load_config(args)
        if not config.domain:
            config.domain = [domain]    # no config: a server for DOMAIN alone
    except ValueError as e:
        return fail("cert", "DOMAIN: %s" % (e,))
    except ConfigError as e:
        return fail("cert", e)
    if domain not in config.domains:
        return fail("cert", "%s is not a hosted domain (%s)" % (domain, ", ".join(
            config.domains)))
    names = [domain, config.service_jid(domain)]
    try:
        chain, key = certs.find_acme_files(domain, args.directory)
        cert_out, key_out, leaf, missing = certs.import_certificate(
            domain, chain, key, config.data_dir, names)
    except certs.ImportRefused as e:
        return fail("cert", e, 1)
    except OSError as e:
        return fail("cert", "%s: %s" % (e.filename, e.strerror), 1)
    out.write("imported %s (expires %s) into %s and %s\n" % (
        chain, leaf.not_valid_after_utc.date().isoformat(), cert_out, key_out))
    if missing:
        out.write("warning: it does not name %s: peers that reach the wave service there "
                  "and check certificates will refuse it (ask the ACME client for that "
                  "name too)\n" % (", ".join(missing),))
    if config.certificate:
        out.write("note: the config sets certificate = %s, which the server uses instead\n"
                  % (config.certificate,))
    elif domain != config.domains[0]:
        out.write("note: the server uses the certificate of its first domain, %s\n"
                  % (config.domains[0],))
    else:
        out.write("restart wavebox to use it\n")
    return 0
