"""
wavebox as an operator runs it (issue 13): one server per store, the version
first in the log, the log as JSON, systemd's readiness, the config file
found as the server finds it, and the systemd unit that ships in ``etc/``.
Each against ``twistd -n wavebox`` child processes where that is what an
operator meets.
"""

import configparser
import json
import os
import re
import shutil
import socket
import sys
import tempfile

from twisted.internet import defer, protocol, reactor, utils
from twisted.internet.task import deferLater
from twisted.trial import unittest

import wavebox
from tests.helpers import CHECKOUT as ROOT, TWISTD_TIMEOUT as TIMEOUT, start_twistd_wavebox
from wavebox import config as wconfig
from wavebox.cli.common import load_config
from wavebox.store import lock as store_lock

VERSION_LINE = re.compile(r"wavebox %s \(Python [\d.]+, Twisted [\w.]+\) for a\.test; "
                          % (re.escape(wavebox.__version__),))


class Servers:
    """Start ``twistd -n wavebox`` children for one test; every one ends with it."""

    def __init__(self, testcase):
        self.testcase = testcase
        self.dir = os.path.abspath(testcase.mktemp())
        os.makedirs(self.dir)
        self.data = os.path.join(self.dir, "data")

    @defer.inlineCallbacks
    def spawn(self, *extra, env=None, wait=True):
        proc, _ = yield start_twistd_wavebox(
            self.testcase, self.dir,
            ["--domain", "a.test", "--data-dir", self.data,
             "--console-interface", "127.0.0.1", "--console-port", "0",
             "--s2s-interface", "127.0.0.1", "--s2s-port", "0"] + list(extra),
            env=env, wait=wait)
        return proc

    @defer.inlineCallbacks
    def spawn_json(self, *extra):
        """A server logging JSON; fires with it and its events once the console listens."""
        proc = yield self.spawn(*extra, wait=False)
        for _ in range(TIMEOUT * 10):
            events = [json.loads(line) for line in output_lines(proc) if line.strip()]
            if any(e.get("log_format", "").startswith("console listening on")
                   for e in events):
                return proc, events
            if not proc.running:
                break
            yield deferLater(reactor, 0.1)
        raise AssertionError("no console in the JSON log:\n%s" % (proc.output,))


def output_lines(proc):
    return proc.output.decode("utf-8", "replace").splitlines()


class OneServerPerStoreTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_a_second_server_on_the_same_store_refuses_naming_the_first_ones_pid(self):
        servers = Servers(self)
        first = yield servers.spawn()
        pid = first.transport.pid
        second = yield servers.spawn(wait=False)
        ended = yield second.ended
        self.assertEqual(ended, (2, None), second.output)
        refusal = [l for l in output_lines(second) if "cannot start" in l]
        self.assertEqual(len(refusal), 1, second.output)
        self.assertIn("--store: the store %s is in use by another wavebox (PID %d)"
                      % (os.path.join(servers.data, "wavebox.sqlite3"), pid), refusal[0])
        self.assertTrue(first.running)
        self.assertEqual(store_lock.holder("sqlite:wavebox.sqlite3", servers.data), pid)

    @defer.inlineCallbacks
    def test_the_lock_goes_with_the_server_even_after_kill_9(self):
        servers = Servers(self)
        first = yield servers.spawn()
        first.transport.signalProcess("KILL")
        yield first.ended
        self.assertIsNone(store_lock.holder("sqlite:wavebox.sqlite3", servers.data))
        second = yield servers.spawn()
        self.assertTrue(second.running)

    def test_a_memory_store_takes_no_lock(self):
        self.assertIsNone(store_lock.acquire("memory:", self.mktemp()))

    def test_the_lock_is_refused_to_a_second_taker_in_one_process_too(self):
        data = self.mktemp()
        held = store_lock.acquire("sqlite:x.sqlite3", data)
        self.addCleanup(held.release)
        e = self.assertRaises(store_lock.StoreLocked, store_lock.acquire,
                              "sqlite:x.sqlite3", data)
        self.assertEqual(e.pid, os.getpid())
        held.release()
        store_lock.acquire("sqlite:x.sqlite3", data).release()


class LogTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_the_first_line_names_the_version_and_the_config(self):
        servers = Servers(self)
        conf = os.path.join(servers.dir, "a.conf")
        with open(conf, "w") as f:
            f.write("[wavebox]\ndomain = a.test\n")
        proc = yield servers.spawn("--config", conf)
        first = output_lines(proc)[0]
        self.assertRegex(first, VERSION_LINE)
        self.assertIn("config %s (--config)" % (conf,), first)

    @defer.inlineCallbacks
    def test_json_log_format_writes_one_json_event_per_line(self):
        servers = Servers(self)
        proc, events = yield servers.spawn_json("--log-format", "json")
        self.assertRegex(events[0]["line"], VERSION_LINE)
        listening = [e for e in events
                     if e.get("log_format", "").startswith("console listening on")]
        self.assertEqual((listening[0]["host"], type(listening[0]["port"])),
                         ("127.0.0.1", int))

    @defer.inlineCallbacks
    def test_the_logformat_spelling_works_too(self):
        servers = Servers(self)
        proc, events = yield servers.spawn_json("--logformat=json")
        self.assertRegex(events[0]["line"], VERSION_LINE)


class _Notifications(protocol.DatagramProtocol):
    def __init__(self):
        self.messages = []
        self.ready = defer.Deferred()

    def datagramReceived(self, data, address=None):
        self.messages.append(data.decode("utf-8"))
        if "READY=1" in data.decode("utf-8").split("\n") and not self.ready.called:
            self.ready.callback(data.decode("utf-8"))


class SystemdTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_ready_is_sent_when_the_ports_listen_and_stopping_at_sigterm(self):
        servers = Servers(self)
        # AF_UNIX paths are short (108 bytes): not under the test's directory.
        short = tempfile.mkdtemp(prefix="wbx-", dir="/tmp")
        self.addCleanup(shutil.rmtree, short, True)
        path = os.path.join(short, "notify")
        notifications = _Notifications()
        port = reactor.listenUNIXDatagram(path, notifications)
        self.addCleanup(port.stopListening)
        proc = yield servers.spawn(env={"NOTIFY_SOCKET": path}, wait=False)
        timer = reactor.callLater(TIMEOUT, notifications.ready.cancel)
        ready = yield notifications.ready
        timer.cancel()
        fields = dict(line.split("=", 1) for line in ready.split("\n"))
        self.assertEqual(fields["MAINPID"], str(proc.transport.pid))
        self.assertEqual(fields["STATUS"], "serving a.test")
        # READY means every port listens: the console accepts a connection now.
        console = yield proc.port
        self.assertIn(b"console listening on 127.0.0.1:%d" % (console,), proc.output)
        s = socket.create_connection(("127.0.0.1", console), timeout=10)
        s.close()
        proc.transport.signalProcess("TERM")
        ended = yield proc.ended
        self.assertEqual(ended, (0, None))
        self.assertIn("STOPPING=1", notifications.messages)

    def test_the_unit_runs_twistd_in_the_foreground_as_a_service_user(self):
        unit = configparser.ConfigParser(interpolation=None, strict=False)
        unit.optionxform = str
        unit.read(os.path.join(ROOT, "etc", "wavebox.service"))
        service = unit["Service"]
        self.assertEqual(service["Type"], "notify")
        self.assertEqual(service["User"], "wavebox")
        self.assertRegex(service["ExecStart"],
                         r"^/\S+/twistd -n --pidfile= wavebox --config /etc/wavebox/wavebox.conf$")
        self.assertIn("network-online.target", unit["Unit"]["After"])
        self.assertEqual(unit["Install"]["WantedBy"], "multi-user.target")


class ConfigDiscoveryTests(unittest.TestCase):

    def write_config(self, **values):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("[wavebox]\n" + "".join("%s = %s\n" % kv for kv in values.items()))
        return path

    def test_config_then_environment_then_system_file_then_none(self):
        system = self.write_config(domain="sys.test")
        env = self.write_config(domain="env.test")
        self.patch(wconfig, "SYSTEM_CONFIG", system)
        find = wconfig.find_config_file
        self.assertEqual(find({"config": "x"}, {"WAVEBOX_CONFIG": env}), ("x", "--config"))
        self.assertEqual(find({}, {"WAVEBOX_CONFIG": env}), (env, "WAVEBOX_CONFIG"))
        self.assertEqual(find({}, {}), (system, "the system's config file"))
        self.patch(wconfig, "SYSTEM_CONFIG", system + ".missing")
        self.assertEqual(find({}, {}), (None, None))

    def test_twistd_options_and_commands_read_the_file_they_find(self):
        conf = self.write_config(domain="env.test", data_dir="/from/env")
        self.patch(os, "environ", dict(os.environ, WAVEBOX_CONFIG=conf))
        options = wconfig.Options()
        options.parseOptions([])
        self.assertEqual(options.config().domains, ["env.test"])
        from wavebox.cli import status
        self.assertEqual(load_config(status.parser().parse_args([])).data_dir, "/from/env")

    @defer.inlineCallbacks
    def test_wavebox_status_finds_the_store_through_wavebox_config(self):
        data = os.path.abspath(self.mktemp())
        from wavebox.store import open_store
        store = open_store("sqlite:wavebox.sqlite3", data)
        yield store.outbox_enqueue("b.test", b"<message/>")
        yield store.close()
        conf = self.write_config(domain="a.test", data_dir=data)
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ["-m", "wavebox.cli", "status"],
            env=dict(os.environ, PYTHONPATH=ROOT, WAVEBOX_CONFIG=conf),
            path=os.path.dirname(data))
        self.assertEqual((code, err), (3, b""))      # found, and no server runs
        self.assertIn(b"b.test", out)


class VersionTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_wavebox_version(self):
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ["-m", "wavebox.cli", "--version"], env=dict(os.environ,
                                                                        PYTHONPATH=ROOT))
        self.assertEqual((out, err, code), (b"wavebox %s\n" % wavebox.__version__.encode(),
                                            b"", 0))


def wavebox_command(*args, stdin=b"", cwd=None):
    """Deferred[(out, err, code)] of ``wavebox ARGS`` in a child process."""
    return utils.getProcessOutputAndValue(
        sys.executable, ["-c", "import sys; sys.argv[0] = 'wavebox'; "
                               "from wavebox.cli import main; sys.exit(main())"] + list(args),
        env=dict(os.environ, PYTHONPATH=ROOT), path=cwd or os.getcwd(), stdinBytes=stdin)


class CommandsBesideTheServerTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_status_says_whether_the_server_runs(self):
        servers = Servers(self)
        proc = yield servers.spawn()
        out, err, code = yield wavebox_command("status", "--data-dir", servers.data)
        self.assertEqual((code, err), (0, b""))
        self.assertIn(b"server: running (PID %d), wavebox %s, up "
                      % (proc.transport.pid, wavebox.__version__.encode()), out)
        self.assertIn(b"S2S streams: 0\nconsole sessions: 0\n", out)
        proc.transport.signalProcess("TERM")
        yield proc.ended
        out, err, code = yield wavebox_command("status", "--data-dir", servers.data)
        self.assertEqual((code, err), (3, b""))
        self.assertIn(b"server: not running\n", out)

    @defer.inlineCallbacks
    def test_adduser_beside_a_running_server_can_log_in_at_once(self):
        from tests.helpers import console_login
        servers = Servers(self)
        proc = yield servers.spawn()
        out, err, code = yield wavebox_command(
            "adduser", "zoe", "--data-dir", servers.data, "--domain", "a.test",
            stdin=b"pass word\n")
        self.assertEqual((code, err, out), (0, b"", b"created account zoe@a.test\n"))
        client = yield console_login(self, proc.console_port, "zoe", "pass word", "zoe@a.test")
        client.send("/quit")
