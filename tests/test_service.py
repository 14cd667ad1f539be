"""
The wiring: ``makeService`` builds the S2S service, disco, ping and discovery
from a configuration; ``twistd -n wavebox`` starts, listens and stops.
"""

import os
import re
import signal
import socket
import sys

from twisted.application import service
from twisted.internet import defer, endpoints, error, protocol, reactor, task
from twisted.logger import ILogObserver, LogLevel
from twisted.trial import unittest
from twisted.words.xish import domish

import wavebox
from tests.helpers import LogWatch
from tests.processes import free_port
from wavebox import ports
from wavebox import service as wservice
from wavebox.config import ConfigError, Options, load
from wavebox.xmpp.disco import NS_WAVE_SERVER

GUARD = 30
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(wavebox.__file__)))


def config_for(testcase, **values):
    base = {"domain": ["a.test"], "data_dir": testcase.mktemp(), "s2s_interface": "127.0.0.2",
            "s2s_port": "0", "nameserver": "127.0.0.1:1", "console_port": "0",
            "web_port": "0"}     # the web client only where a test asks, as start_wavebox
    base.update(values)
    return load(base)


class MakeServiceTests(unittest.TestCase):

    def test_s2s_and_ping_are_children_of_the_top_service(self):
        top = wservice.makeService(config_for(self, xmpp_server_ping=["b.test"]))
        self.assertEqual(top.name, "wavebox")
        self.assertIs(top.getServiceNamed("s2s"), top.s2s)
        self.assertEqual(top.getServiceNamed("ping").domains, ["b.test"])
        self.assertEqual(top.s2s.domains, ["a.test", "wave.a.test"])
        self.assertEqual(top.resolver.nameserver, ("127.0.0.1", 1))

    def test_wave_service_is_advertised_in_disco(self):
        top = wservice.makeService(config_for(self, wave_service_prefix="waves"))
        iq = domish.Element((None, "iq"))
        iq["type"], iq["from"], iq["to"] = "get", "a.test", "waves.a.test"
        iq.addElement(("http://jabber.org/protocol/disco#info", "query"))
        answer = self.successResultOf(top.s2s.request(iq))
        identity = answer.query.identity
        self.assertEqual((identity["category"], identity["type"], identity["name"]),
                         ("collaboration", "google-wave", "wavebox"))
        self.assertIn(NS_WAVE_SERVER, [f["var"] for f in answer.query.elements()
                                       if f.name == "feature"])

    @defer.inlineCallbacks
    def test_starts_listening_and_stops_cleanly(self):
        top = wservice.makeService(config_for(self))
        top.startService()
        host, port = top.s2s.listening_address()
        self.assertEqual(host, "127.0.0.2")
        client = yield endpoints.connectProtocol(
            endpoints.TCP4ClientEndpoint(reactor, host, port), protocol.Protocol())
        yield top.stopService()
        client.transport.loseConnection()
        self.assertIsNone(top.s2s.listening_address())

    def test_unusable_certificate_is_a_config_error(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("not a certificate")
        config = config_for(self, certificate=path, private_key=path)
        self.assertRaises(ConfigError, wservice.makeService, config)

    def test_a_trusted_ca_that_holds_no_certificate_is_a_config_error_naming_it(self):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("not a certificate")
        for mode in ({}, {"component": "127.0.0.1:5347", "component_secret": "s"}):
            e = self.assertRaises(ConfigError, wservice.makeService,
                                  config_for(self, trusted_ca=path, **mode))
            self.assertTrue(str(e).startswith("--trusted-ca: cannot use %s: " % (path,)),
                            (mode, str(e)))

    @defer.inlineCallbacks
    def test_console_port_in_use_is_a_config_error_naming_it(self):
        taken = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
        self.addCleanup(taken.stopListening)
        port = taken.getHost().port
        top = wservice.makeService(config_for(self, console_port=str(port)))
        e = self.assertRaises(ConfigError, top.startService)
        yield top.stopService()
        self.assertEqual(str(e), "--console-port: cannot listen on 127.0.0.1:%d: "
                                 "Address already in use" % (port,))

    @defer.inlineCallbacks
    def test_s2s_port_in_use_under_twistd_is_one_log_line_and_exit_status_2(self):
        taken = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.2")
        self.addCleanup(taken.stopListening)
        port = taken.getHost().port
        top = wservice.makeService(config_for(self, s2s_port=str(port)))
        top.twistd_options = {"pidfile": ""}
        events = LogWatch(self).events
        e = self.assertRaises(SystemExit, top.startService)
        yield top.stopService()
        self.assertEqual(e.code, 2)
        critical = [ev for ev in events if ev.get("log_level") == LogLevel.critical]
        self.assertEqual([str(ev["error"]) for ev in critical],
                         ["--s2s-port: cannot listen on 127.0.0.2:%d: Address already in use"
                          % (port,)])

    @defer.inlineCallbacks
    def test_port_in_use_when_daemonized_tells_the_waiting_twistd_parent(self):
        taken = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.2")
        self.addCleanup(taken.stopListening)
        port = taken.getHost().port
        top = wservice.makeService(config_for(self, s2s_port=str(port)))
        read_end, write_end = os.pipe()
        self.addCleanup(os.close, read_end)
        top.twistd_options = {"pidfile": "", "statusPipe": write_end}
        self.assertRaises(SystemExit, top.startService)
        yield top.stopService()
        self.assertEqual(os.read(read_end, 200).decode("ascii"),
                         "1 --s2s-port: cannot listen on 127.0.0.2:%d: Address already in use"
                         % (port,))
        self.assertEqual(os.read(read_end, 1), b"")     # closed: the parent is not left waiting

    def test_a_store_that_is_not_a_database_is_a_config_error_naming_store(self):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("not a database, but long enough to be read as one" * 20)
        top = wservice.makeService(config_for(self, store="sqlite:" + path))
        e = self.assertRaises(ConfigError, top.startService)
        self.assertTrue(str(e).startswith("--store: cannot open the store %s" % (path,)), e)
        return top.stopService()

    def test_a_data_dir_that_is_a_file_is_a_config_error_naming_data_dir(self):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("a file")
        e = self.assertRaises(ConfigError, wservice.makeService,
                              config_for(self, data_dir=path))
        self.assertTrue(str(e).startswith("--data-dir: "), e)

    def test_log_level_filters_what_twistd_prints(self):
        top = wservice.WaveboxService("warn")
        lines = []
        top.twistd_options = {"logfile": "-", "nodaemon": True}
        application = service.Application("test")
        self.patch(sys, "stdout", _Lines(lines))
        top.setServiceParent(application)
        observer = application.getComponent(ILogObserver)
        observer({"log_level": LogLevel.info, "log_format": "quiet", "log_time": 0,
                  "log_namespace": "x"})
        observer({"log_level": LogLevel.warn, "log_format": "loud", "log_time": 0,
                  "log_namespace": "x"})
        self.assertEqual([("quiet" in l, "loud" in l) for l in lines], [(False, True)])


    def test_twisteds_port_chatter_is_not_printed(self):
        from twisted.python import log as legacy
        top = wservice.WaveboxService("info")
        lines = []
        top.twistd_options = {"logfile": "-", "nodaemon": True}
        application = service.Application("test")
        self.patch(sys, "stdout", _Lines(lines))
        top.setServiceParent(application)
        seen = LogWatch(self).events
        for text in ("ConsoleFactory starting on 9876", "(TCP Port 9876 Closed)",
                     "something else from Twisted"):
            legacy.msg(text)
        observer = application.getComponent(ILogObserver)
        for event in seen:
            observer(event)
        printed = "".join(lines)
        self.assertIn("something else from Twisted", printed)
        self.assertNotIn("starting on", printed)
        self.assertNotIn("Closed", printed)


class CrowdAtTheDoorTests(unittest.TestCase):
    """
    Many people connecting at the same moment (after a restart, or a class
    logging in together) are all let in: the kernel holds them for us while
    the reactor accepts a few a turn (wavebox.ports).  With Twisted's
    default backlog of 50, the connections past it are taken by the client's
    kernel as made but never reach us: their banner never comes.
    """

    CROWD = 300

    @defer.inlineCallbacks
    def test_three_hundred_console_connections_at_once_are_all_greeted(self):
        top = wservice.makeService(config_for(
            self, console_max_sessions=str(self.CROWD + 10),
            console_max_sessions_per_ip=str(self.CROWD + 10)))
        top.startService()
        self.addCleanup(top.stopService)
        port = top.getServiceNamed("console").listening.getHost().port
        crowd = []
        self.addCleanup(lambda: [c.close() for c in crowd])
        for _ in range(self.CROWD):         # all in this one turn: nobody is accepted yet
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            crowd.append(c)
        greeted = set()
        for _ in range(int(GUARD / 0.05)):
            yield task.deferLater(reactor, 0.05, lambda: None)
            for i, c in enumerate(crowd):
                if i not in greeted:
                    try:
                        if c.recv(4096).startswith(b"wavebox console"):
                            greeted.add(i)
                    except BlockingIOError:
                        pass
            if len(greeted) == self.CROWD:
                break
        self.assertEqual(len(greeted), self.CROWD)

    def test_every_listener_has_the_long_backlog_and_accepts_a_few_a_turn(self):
        top = wservice.makeService(config_for(
            self, web_port=str(free_port("127.0.0.1")), web_interface="127.0.0.1",
            metrics_port="0", metrics_interface="127.0.0.1",
            s2s_tls_port="0"))
        top.startService()
        self.addCleanup(top.stopService)
        listeners = {"console": top.getServiceNamed("console").listening,
                     "web": top.getServiceNamed("web").listening,
                     "metrics": top.getServiceNamed("metrics").listening,
                     "s2s": top.s2s._listening,
                     "s2s direct TLS": top.s2s._listening_tls}
        self.assertEqual({name: (port.backlog, port.numberAccepts)
                          for name, port in listeners.items()},
                         {name: (ports.BACKLOG, ports.ACCEPTS_PER_TURN) for name in listeners})


class _Lines:
    def __init__(self, lines):
        self.lines = lines

    def write(self, text):
        self.lines.append(text)

    def flush(self):
        pass


class _Twistd(protocol.ProcessProtocol):
    """Collects a twistd child's output; fires ``listening`` with the S2S port."""

    def __init__(self):
        self.output = ""
        self.listening = defer.Deferred()
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.output += data.decode("utf-8", "replace")
        match = re.search(r"S2S listening on ([\d.]+):(\d+)", self.output)
        if match and not self.listening.called:
            self.listening.callback((match.group(1), int(match.group(2))))

    errReceived = outReceived

    def processEnded(self, reason):
        if not self.listening.called:
            self.listening.errback(reason)
        self.ended.callback(reason.value)


class _Greeter(protocol.Protocol):
    """Opens a stream and keeps the answer."""

    def __init__(self):
        self.received = b""
        self.answered = defer.Deferred()

    def connectionMade(self):
        self.transport.write(
            b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/"
            b"streams' xmlns:db='jabber:server:dialback' to='a.test' from='b.test' "
            b"version='1.0'>")

    def dataReceived(self, data):
        self.received += data
        if b"</stream:features>" in self.received and not self.answered.called:
            self.answered.callback(self.received.decode("utf-8"))


class TwistdTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_twistd_wavebox_starts_listens_and_stops_on_sigterm(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        conf = os.path.join(directory, "wavebox.conf")
        with open(conf, "w") as f:
            f.write("[wavebox]\ndomain = a.test\ndata_dir = %s/data\ns2s_interface = 127.0.0.2\n"
                    "s2s_port = 0\nconsole_port = 0\nlog_level = info\n" % (directory,))
        child = _Twistd()
        env = dict(os.environ, PYTHONPATH=CHECKOUT)
        process = reactor.spawnProcess(
            child, sys.executable,
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "--logfile=-", "wavebox", "--config", conf],
            env=env, path=directory)

        def kill_if_running():
            try:
                process.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass
        self.addCleanup(kill_if_running)

        host, port = yield child.listening.addTimeout(GUARD, reactor)
        self.assertEqual(host, "127.0.0.2")
        greeter = _Greeter()
        yield endpoints.connectProtocol(endpoints.TCP4ClientEndpoint(reactor, host, port),
                                        greeter)
        answer = yield greeter.answered.addTimeout(GUARD, reactor)
        self.assertIn("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>",
                      answer)
        greeter.transport.loseConnection()

        process.signalProcess("TERM")
        ended = yield child.ended.addTimeout(GUARD, reactor)
        # twistd shuts down, then ends by the signal it was given.
        self.assertIn(ended.signal or ended.exitCode, (signal.SIGTERM, 0))
        self.assertIn("Server Shut Down.", child.output)
        self.assertNotIn("Traceback", child.output)
        self.assertTrue(os.path.exists(os.path.join(directory, "data", "dialback.secret")))

    def test_bad_value_stops_start_up_with_one_line_naming_the_option(self):
        # What twistd calls with the parsed options: a bad value is one line
        # on stderr and exit status 2, never a traceback.
        import io
        for argv, option in ((["--s2s-port", "many"], "--s2s-port"),
                             (["--tls-required", "maybe"], "--tls-required"),
                             (["--certificate", self.mktemp(), "--private-key", self.mktemp()],
                              "--certificate")):
            err = io.StringIO()
            self.patch(sys, "stderr", err)
            options = Options()
            options.parseOptions(["--domain", "a.test", "--data-dir", self.mktemp()] + argv)
            e = self.assertRaises(SystemExit, wservice.makeServiceFromOptions, options)
            self.assertEqual(e.code, 2)
            [line] = err.getvalue().splitlines()
            self.assertTrue(line.startswith("wavebox: %s: " % (option,)), line)

    def test_plugin_options_reach_make_service(self):
        options = Options()
        options.parseOptions(["--domain", "a.test", "--data-dir", self.mktemp(),
                              "--s2s-port", "0", "--xmpp_server_ping", "b.test"])
        top = wservice.makeServiceFromOptions(options)
        self.assertEqual(top.getServiceNamed("ping").domains, ["b.test"])
