"""``wavebox adduser``: accounts made from the command line, as the console will check them."""

import os
import subprocess
import sys

from twisted.trial import unittest

import wavebox
from wavebox.console.adduser import read_new_password
from wavebox.store import open_store
from wavebox.store.accounts import verify_password

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(wavebox.__file__)))


def adduser(*args, stdin="secret\n"):
    return subprocess.run(
        [sys.executable, "-m", "wavebox.cli", "adduser"] + list(args),
        input=stdin, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=ROOT))


class AddUserTests(unittest.TestCase):

    def setUp(self):
        self.data = os.path.abspath(self.mktemp())

    def test_user_without_domain_gets_the_first_domain(self):
        r = adduser("Alice", "--data-dir", self.data, "--domain", "a.test", "--domain", "b.test",
                    "--create")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "created account alice@a.test\n")

    def test_password_is_read_from_a_pipe_and_hashed(self):
        r = adduser("bob@b.test", "--data-dir", self.data, "--create", stdin="p4ss word\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        return self._check("bob@b.test", "p4ss word")

    def _check(self, address, password):
        store = open_store("sqlite:wavebox.sqlite3", self.data)
        d = store.get_account(address)

        def got(account):
            self.assertTrue(account.password_hash.startswith("scrypt$"))
            self.assertTrue(verify_password(password, account.password_hash))
            self.assertFalse(verify_password("wrong", account.password_hash))
        d.addCallback(got)
        d.addBoth(lambda r: store.close().addCallback(lambda _: r))
        return d

    def test_existing_account_is_refused_unless_replaced(self):
        self.assertEqual(adduser("carol@a.test", "--data-dir", self.data, "--create").returncode,
                         0)
        r = adduser("carol@a.test", "--data-dir", self.data, stdin="other\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("already has an account", r.stderr)
        r = adduser("carol@a.test", "--data-dir", self.data, "--replace", stdin="other\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        return self._check("carol@a.test", "other")

    def test_config_file_names_the_store_and_domains(self):
        conf = os.path.abspath(self.mktemp())
        with open(conf, "w") as f:
            f.write("[wavebox]\ndomain = z.test\ndata_dir = %s\n" % (self.data,))
        r = adduser("dave", "--config", conf, "--create")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "created account dave@z.test\n")
        return self._check("dave@z.test", "secret")

    def test_a_missing_store_is_refused_without_create_and_nothing_is_made(self):
        r = adduser("zed", "--data-dir", self.data, "--domain", "a.test")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "wavebox adduser: no store at %s: give the server's "
                         "--config (or --data-dir and --store), or --create to make a new "
                         "store there\n" % (os.path.join(self.data, "wavebox.sqlite3"),))
        self.assertFalse(os.path.exists(self.data))

    def test_user_outside_the_hosted_domains_is_refused(self):
        r = adduser("eve@elsewhere.test", "--data-dir", self.data, "--domain", "a.test")
        self.assertEqual(r.returncode, 2)
        self.assertIn("not in a hosted domain", r.stderr)

    def test_empty_password_is_refused(self):
        r = adduser("frank", "--data-dir", self.data, "--domain", "a.test", "--create",
                    stdin="\n")
        self.assertEqual(r.returncode, 2)
        self.assertIn("password is empty", r.stderr)


class _Terminal:
    """Standard input that is a terminal: read_new_password must not read it."""

    def isatty(self):
        return True

    def readline(self):
        raise AssertionError("a terminal's password is asked with getpass, not read")


class PasswordPromptTests(unittest.SynchronousTestCase):

    def asker(self, *answers):
        prompts = []
        answers = list(answers)

        def ask(prompt):
            prompts.append(prompt)
            return answers.pop(0)
        return prompts, ask

    def test_terminal_asks_twice_without_echo(self):
        prompts, ask = self.asker("hunter2", "hunter2")
        self.assertEqual(read_new_password(_Terminal(), ask), "hunter2")
        self.assertEqual(prompts, ["Password: ", "Password again: "])

    def test_terminal_answers_that_differ_are_refused(self):
        _, ask = self.asker("hunter2", "hunter3")
        e = self.assertRaises(ValueError, read_new_password, _Terminal(), ask)
        self.assertEqual(str(e), "the passwords differ")

    def test_the_prompt_is_getpass_by_default(self):
        import getpass
        self.assertIs(read_new_password.__defaults__[-1], getpass.getpass)

    def test_pipe_is_read_once_without_prompting(self):
        import io
        prompts, ask = self.asker()
        self.assertEqual(read_new_password(io.StringIO("p4ss\nignored\n"), ask), "p4ss")
        self.assertEqual(prompts, [])
