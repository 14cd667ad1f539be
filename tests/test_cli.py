"""
The ``wavebox`` command's shared flags: each command that reads the
server's configuration takes the server's own options, spelt, documented and
checked as ``twistd wavebox`` does, from the one option table.
"""

import importlib
import io
import sys

from twisted.trial import unittest

from wavebox import cli
from wavebox.cli.common import load_config
from wavebox.config import OPTIONS, ConfigError

#: command -> the server options it must take.
SHARED = {
    "adduser": ("config", "data-dir", "store", "domain"),
    "status": ("config", "data-dir", "store"),
    "backup": ("config", "data-dir", "store"),
    "console": ("config",),
    "check": ("config", "nameserver"),
}


def parser_of(command):
    return importlib.import_module("wavebox.cli." + cli.SUBCOMMANDS[command][0]).parser()


class SharedFlagTests(unittest.SynchronousTestCase):

    def test_each_command_takes_the_server_options_with_the_tables_help(self):
        table = {o.name: o for o in OPTIONS}
        for command, names in SHARED.items():
            actions = {a.dest: a for a in parser_of(command)._actions}
            for name in names:
                option = table[name]
                self.assertIn(option.key, actions, (command, name))
                self.assertIn("--" + name, actions[option.key].option_strings, command)
                self.assertTrue(actions[option.key].help.startswith(option.help), command)

    def test_command_line_wins_over_the_config_file(self):
        conf = self.mktemp()
        with open(conf, "w") as f:
            f.write("[wavebox]\ndomain = a.test\ndata_dir = /from/file\nstore = memory:\n")
        args = parser_of("status").parse_args(["-c", conf, "--data-dir", "/cli"])
        config = load_config(args)
        self.assertEqual((config.data_dir, config.store, config.domains),
                         ("/cli", "memory:", ["a.test"]))

    def test_a_bad_value_is_refused_naming_the_flag_as_typed(self):
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        with self.assertRaises(SystemExit) as caught:
            parser_of("backup").parse_args(["--store", "ftp://x", "dest"])
        self.assertEqual(caught.exception.code, 2)
        self.assertIn("argument --store: ", err.getvalue())

    def test_unknown_arguments_are_refused(self):
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        with self.assertRaises(SystemExit) as caught:
            parser_of("status").parse_args(["--frobnicate"])
        self.assertEqual(caught.exception.code, 2)
        self.assertIn("--frobnicate", err.getvalue())

    def test_a_config_file_error_is_a_config_error(self):
        conf = self.mktemp()
        with open(conf, "w") as f:
            f.write("[wavebox]\nfrobnicate = yes\n")
        args = parser_of("status").parse_args(["-c", conf])
        self.assertRaises(ConfigError, load_config, args)

    def test_no_command_is_declared_inside_a_protocol_module(self):
        for command, (module, _) in cli.SUBCOMMANDS.items():
            self.assertTrue(callable(importlib.import_module("wavebox.cli." + module).main))
        for name in ("wavebox.federation.outbox", "wavebox.xmpp.check", "wavebox.xmpp.certs",
                     "wavebox.store.backup", "wavebox.console.adduser"):
            self.assertFalse(hasattr(importlib.import_module(name), "main"), name)
