"""
The checkout as a fresh machine sees it (issue 3, "Foundation"): README.rst
gives one test command and ``.ci/run`` runs exactly that command; the
packaging files the README's ``pip install .`` relies on are there.
"""

import configparser
import fnmatch
import os
import re

from twisted.trial import unittest

import wavebox

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(wavebox.__file__)))


def read(*parts):
    with open(os.path.join(CHECKOUT, *parts), encoding="utf-8") as f:
        return f.read()


def literal_block_after(text, title):
    """The command lines of the first ``::`` literal block in the section ``title``."""
    section = text.split("\n%s\n%s\n" % (title, "=" * len(title)), 1)[1]
    block = section.split("::\n\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        if line.strip():
            lines.append(line.strip())
    return lines


def commands(script):
    """The lines of a shell script that run something (no comments or blanks)."""
    return [line.strip() for line in script.splitlines()
            if line.strip() and not line.strip().startswith("#")]


class ReadmeCommandTests(unittest.SynchronousTestCase):

    def test_readme_gives_one_test_command(self):
        [command] = literal_block_after(read("README.rst"), "Run the tests")
        self.assertIn("pytest tests", command)

    def test_ci_runs_exactly_the_readme_test_command_last(self):
        [command] = literal_block_after(read("README.rst"), "Run the tests")
        self.assertEqual(commands(read(".ci", "run"))[-1], command)

    def test_ci_script_is_executable(self):
        self.assertTrue(os.access(os.path.join(CHECKOUT, ".ci", "run"), os.X_OK))

    def test_readme_gives_one_install_and_run_command(self):
        [command] = literal_block_after(read("README.rst"), "Install and run")
        self.assertRegex(command, r"pip install \. && \S*twistd -n wavebox --domain \S+$")


class PackagingTests(unittest.SynchronousTestCase):

    def test_pyproject_names_the_setuptools_build_backend(self):
        self.assertRegex(read("pyproject.toml"),
                         re.compile(r'^build-backend = "setuptools.build_meta"$', re.M))

    def test_every_package_and_the_twistd_plugin_are_installed(self):
        parser = configparser.ConfigParser()
        parser.read_string(read("setup.cfg"))
        listed = set(parser.get("options", "packages").split())
        found = {os.path.relpath(root, CHECKOUT).replace(os.sep, ".")
                 for root, dirs, files in os.walk(os.path.join(CHECKOUT, "wavebox"))
                 if "__init__.py" in files}
        self.assertEqual(listed - {"twisted.plugins"}, found)
        self.assertIn("twisted.plugins", listed)
        # Twisted's own package must never be shadowed by ours.
        self.assertFalse(os.path.exists(os.path.join(CHECKOUT, "twisted", "__init__.py")))
        self.assertFalse(os.path.exists(
            os.path.join(CHECKOUT, "twisted", "plugins", "__init__.py")))

    def test_wavebox_console_script_is_the_cli(self):
        parser = configparser.ConfigParser()
        parser.read_string(read("setup.cfg"))
        self.assertEqual(parser.get("options.entry_points", "console_scripts").split(),
                         ["wavebox", "=", "wavebox.cli:main"])

    def test_the_browsers_static_files_are_package_data(self):
        # The web client is served from the installed package (no CDN): every
        # file under wavebox/web/static must match a package_data glob, and
        # every glob must match something.
        parser = configparser.ConfigParser()
        parser.read_string(read("setup.cfg"))
        globs = parser.get("options.package_data", "wavebox.web").split()
        package = os.path.join(CHECKOUT, "wavebox", "web")
        files = [os.path.relpath(os.path.join(root, name), package).replace(os.sep, "/")
                 for root, dirs, names in os.walk(os.path.join(package, "static"))
                 for name in names]
        self.assertIn("static/ot/index.js", files)
        for name in files:
            self.assertTrue(any(fnmatch.fnmatch(name, g) and name.count("/") == g.count("/")
                                for g in globs), name)
        for g in globs:
            self.assertTrue(any(fnmatch.fnmatch(name, g) for name in files), g)

    def test_the_store_schema_files_are_package_data(self):
        # The store reads its schema from the installed package
        # (wavebox/store/engine.py): every .sql file must be shipped.
        parser = configparser.ConfigParser()
        parser.read_string(read("setup.cfg"))
        globs = parser.get("options.package_data", "wavebox.store").split()
        package = os.path.join(CHECKOUT, "wavebox", "store")
        files = [os.path.relpath(os.path.join(root, name), package).replace(os.sep, "/")
                 for root, dirs, names in os.walk(os.path.join(package, "schema"))
                 for name in names if not name.endswith(".pyc")]
        self.assertIn("schema/sqlite/001_initial.sql", files)
        self.assertIn("schema/postgresql/001_initial.sql", files)
        for name in files:
            self.assertTrue(any(fnmatch.fnmatch(name, g) and name.count("/") == g.count("/")
                                for g in globs), name)
