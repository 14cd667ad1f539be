"""``wavebox gencert``: keys and certificates for a domain, or a test CA."""

import argparse
import sys

from wavebox.config import options_by_key
from wavebox.xmpp import certs


def main(argv):
    parser = argparse.ArgumentParser(
        prog="wavebox gencert",
        description="Make an RSA key (PKCS#8 PEM) and a certificate for DOMAIN and "
                    "its wave service JID, self-signed or signed by a CA: DIR/DOMAIN.crt "
                    "and DIR/DOMAIN.key.  Or make a test CA with --make-ca NAME: "
                    "DIR/NAME.crt and DIR/NAME.key, with '-' for spaces.  Keys are "
                    "written with mode 0600.",
        epilog="A test federation: wavebox gencert --make-ca 'Test CA' --out certs; "
               "wavebox gencert a.test --ca-cert certs/Test-CA.crt --ca-key "
               "certs/Test-CA.key --out certs; then certificate, private_key and "
               "trusted_ca in each server's config (docs/xmpp.rst).")
    parser.add_argument("domain", nargs="?", metavar="DOMAIN", help="the hosted domain")
    parser.add_argument("--make-ca", metavar="NAME", help="make a CA named NAME instead")
    parser.add_argument("--ca-cert", metavar="FILE", help="sign with this CA certificate")
    parser.add_argument("--ca-key", metavar="FILE", help="private key of --ca-cert")
    parser.add_argument("--out", metavar="DIR", default=".", help="where to write (default .)")
    parser.add_argument("--days", type=int, default=None,
                        help="validity in days (default 365; 3650 for a CA)")
    parser.add_argument("--wave-service-prefix", default="wave", metavar="PREFIX",
                        help="the wave service JID is PREFIX.DOMAIN (default wave)")
    args = parser.parse_args(argv)
    if bool(args.make_ca) == bool(args.domain):
        parser.error("give either DOMAIN or --make-ca NAME")
    if bool(args.ca_cert) != bool(args.ca_key):
        parser.error("--ca-cert and --ca-key go together")
    if args.days is not None and args.days <= 0:
        parser.error("--days must be positive")
    try:
        if args.make_ca:
            cert_path, key_path = certs.gencert_ca(args.make_ca, args.out, args.days or 3650)
        else:
            known = options_by_key()
            try:
                domain = known["domain"].parse(args.domain)
                prefix = known["wave_service_prefix"].parse(args.wave_service_prefix)
            except ValueError as e:
                parser.error(str(e))
            cert_path, key_path = certs.gencert(domain, args.out, args.ca_cert, args.ca_key,
                                                args.days or 365, prefix)
    except (OSError, ValueError) as e:
        sys.stderr.write("wavebox gencert: %s\n" % (e,))
        return 1
    sys.stdout.write("wrote %s\nwrote %s\n" % (cert_path, key_path))
    return 0
