"""
``wavebox backup`` and ``wavebox restore`` as an operator uses them (issue 13
item 7): a backup of a running ``twistd -n wavebox`` holds the store, the
dialback secret, the certificate and key; restored into a fresh data
directory, a server started there has every wave at the same version.
"""

import json
import os
import re
import stat

from twisted.internet import defer
from twisted.trial import unittest

from tests.helpers import console_login
from tests.test_admin import add_account
from tests.test_operator import Servers, wavebox_command


def read(path):
    with open(path, "rb") as f:
        return f.read()


class BackupRestoreTests(unittest.TestCase):

    @defer.inlineCallbacks
    def open_wave(self, port):
        client = yield console_login(self, port, "alice", "secret", "alice@a.test")
        client.send("/list")
        yield client.expect(r"^  0 ")
        client.send("/open 0")
        header = yield client.expect(r"^--- wave \S+, version \d+ \(hash \w+\)")
        return client, header.group(0)

    @defer.inlineCallbacks
    def test_a_backup_taken_while_running_restores_into_a_fresh_directory(self):
        servers = Servers(self)
        yield add_account(servers.data, "alice@a.test", "secret")
        proc = yield servers.spawn()
        client = yield console_login(self, proc.console_port, "alice", "secret",
                                     "alice@a.test")
        client.send("/new")
        yield client.expect("^created wave")
        for line in ("one", "two", "three"):
            client.send(line)
            yield client.expect("^alice@a.test: %s$" % (line,))
        destination = os.path.join(servers.dir, "backup")
        out, err, code = yield wavebox_command("backup", destination,
                                               "--data-dir", servers.data)
        self.assertEqual((err, code), (b"", 0))
        self.assertIn(b"holds the private keys", out)
        self.assertEqual(stat.S_IMODE(os.stat(destination).st_mode), 0o700)
        manifest = json.loads(read(os.path.join(destination, "MANIFEST.json")))
        self.assertEqual(manifest["data"], ["wavebox.sqlite3", "dialback.secret",
                                            "tls/self-signed.crt", "tls/self-signed.key"])
        _, before = yield self.open_wave(proc.console_port)
        proc.transport.signalProcess("TERM")
        yield proc.ended

        fresh = os.path.join(servers.dir, "fresh")
        out, err, code = yield wavebox_command("restore", destination, "--data-dir", fresh)
        self.assertEqual((err, code), (b"", 0))
        for name in ("dialback.secret", "tls/self-signed.crt", "tls/self-signed.key"):
            self.assertEqual(read(os.path.join(fresh, name)),
                             read(os.path.join(servers.data, name)), name)
        servers.data = fresh
        proc = yield servers.spawn()
        _, after = yield self.open_wave(proc.console_port)
        self.assertEqual(after, before)
        # The restored certificate is used, not a new self-signed one.
        self.assertEqual(read(os.path.join(fresh, "tls/self-signed.crt")),
                         read(os.path.join(destination, "data/tls/self-signed.crt")))

    @defer.inlineCallbacks
    def test_restore_refuses_a_data_directory_that_holds_a_store(self):
        servers = Servers(self)
        yield add_account(servers.data, "alice@a.test", "secret")
        destination = os.path.join(servers.dir, "backup")
        out, err, code = yield wavebox_command("backup", destination,
                                               "--data-dir", servers.data)
        self.assertEqual((err, code), (b"", 0))
        out, err, code = yield wavebox_command("restore", destination,
                                               "--data-dir", servers.data)
        self.assertEqual(code, 1)
        self.assertTrue(re.match(rb"wavebox restore: \S+wavebox.sqlite3 already holds a "
                                 rb"store", err), err)

    @defer.inlineCallbacks
    def test_files_named_by_the_config_outside_the_data_dir_are_kept_and_put_back(self):
        servers = Servers(self)
        yield add_account(servers.data, "alice@a.test", "secret")
        elsewhere = os.path.join(servers.dir, "etc")
        os.makedirs(elsewhere)
        from wavebox.xmpp import certs
        cert, key = certs.gencert("a.test", out=elsewhere)
        conf = os.path.join(elsewhere, "a.conf")
        with open(conf, "w") as f:
            f.write("[wavebox]\ndomain = a.test\ndata_dir = %s\ncertificate = %s\n"
                    "private_key = %s\n" % (servers.data, cert, key))
        destination = os.path.join(servers.dir, "backup")
        out, err, code = yield wavebox_command("backup", destination, "--config", conf)
        self.assertEqual((err, code), (b"", 0))
        saved = {c: read(c) for c in (cert, key, conf)}
        for path in saved:
            os.unlink(path)
        out, err, code = yield wavebox_command("restore", destination, "--data-dir",
                                               os.path.join(servers.dir, "fresh"))
        self.assertEqual((err, code), (b"", 0))
        for path, content in saved.items():
            self.assertEqual(read(path), content, path)
            self.assertIn(b"restored %s" % path.encode(), out)
