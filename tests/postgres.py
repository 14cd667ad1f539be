"""
A real PostgreSQL for the tests (issue 12): a throwaway cluster of the
tests' own, never Debian's system cluster.

:class:`PostgresCluster` runs ``initdb`` and ``pg_ctl`` from Debian's
``postgresql`` package (the binaries found with a glob over
``/usr/lib/postgresql/*/bin``) in a temporary directory, with ``trust``
authentication for the role ``wave``, listening on a loopback address and a
port chosen by binding port 0 first, and on a Unix socket inside that
directory, so it never meets another cluster on this machine.  As root the
commands run as the ``postgres`` user (``initdb`` refuses root).

:func:`shared_cluster` starts one cluster per test process, on first use,
and stops it when the process exits; each test takes a database of its own
from it (:meth:`PostgresCluster.create_database`, about 50 ms), so tests stay
independent without paying for a cluster each.  A test that kills the server
(``pg_ctl -m immediate stop`` is a crash: nothing acknowledged may be lost)
starts a cluster of its own instead.

If PostgreSQL is not installed, :class:`PostgresUnavailable` says what to
install: the tests that need it fail, never skip.
"""

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile

from tests.processes import free_port

ROLE = "wave"


class PostgresUnavailable(Exception):
    """PostgreSQL's server binaries are not on this machine."""


def _binaries():
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(bindir, "pg_ctl")):
            return bindir
    raise PostgresUnavailable(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl): "
        "apt-get install postgresql (.ci/run does this when run as root)")


class PostgresCluster:
    """One PostgreSQL server of the tests' own, from initdb to stop."""

    def __init__(self, address="127.0.0.1"):
        self.address = address
        self.port = None
        self.directory = None
        self.bindir = None
        self._databases = 0

    @property
    def data(self):
        return os.path.join(self.directory, "data")

    @property
    def log_path(self):
        return os.path.join(self.directory, "postgres.log")

    def _run(self, *argv, check=True):
        command = [os.path.join(self.bindir, argv[0])] + list(argv[1:])
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--"] + command
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              cwd=self.directory, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError("%s failed (%d): %s" % (
                argv[0], done.returncode, done.stdout.decode("utf-8", "replace").strip()))
        return done

    def start(self):
        self.bindir = _binaries()
        # Under /tmp: the postgres user must be able to reach it, and a
        # test's scratch directory may sit under a path only root can enter.
        self.directory = tempfile.mkdtemp(prefix="wavebox-pg-")
        os.chmod(self.directory, 0o777)
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", ROLE,
                  "--no-sync", "-E", "UTF8", "--locale=C")
        for attempt in range(5):
            self.port = free_port(self.address)
            done = self._run("pg_ctl", "-D", self.data, "-l", self.log_path, "-w", "-t", "60",
                             "-o", "-p %d -k %s -h %s -c fsync=on -c max_connections=200"
                             % (self.port, self.directory, self.address),
                             "start", check=False)
            if done.returncode == 0:
                return self
            # Another process may have taken the port between bind and start.
        raise RuntimeError("PostgreSQL did not start: %s" % (self.log_tail(),))

    def log_tail(self, lines=20):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def url(self, database="postgres"):
        """The ``--store`` URL of one database of this cluster."""
        return "postgresql://%s@%s:%d/%s" % (ROLE, self.address, self.port, database)

    def psql(self, sql, database="postgres"):
        """Run SQL with psql; its output as text (unaligned, tuples only)."""
        done = self._run("psql", "-h", self.address, "-p", str(self.port), "-U", ROLE,
                         "-d", database, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                         "-c", sql)
        return done.stdout.decode("utf-8").strip()

    def create_database(self, prefix="test"):
        """A new, empty database; its name."""
        self._databases += 1
        name = "%s_%d_%d" % (prefix, os.getpid(), self._databases)
        self.psql("CREATE DATABASE %s" % (name,))
        return name

    def drop_database(self, name):
        self.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % (name,))

    def stop(self, mode="fast"):
        """Stop the server (``immediate`` is a crash) and remove its directory."""
        if self.directory is None:
            return
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None

    def crash(self):
        """``pg_ctl -m immediate stop``, keeping the data for a restart."""
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def restart(self):
        self._run("pg_ctl", "-D", self.data, "-l", self.log_path, "-w", "-t", "60",
                  "-o", "-p %d -k %s -h %s" % (self.port, self.directory, self.address),
                  "start")


_shared = None


def shared_cluster():
    """The test process's cluster, started on first use, stopped at exit."""
    global _shared
    if _shared is None:
        cluster = PostgresCluster()
        cluster.start()
        atexit.register(cluster.stop)
        _shared = cluster
    return _shared


def fresh_database(testcase, prefix="test"):
    """A database of the shared cluster for one test, dropped after it; its URL."""
    cluster = shared_cluster()
    name = cluster.create_database(prefix)
    testcase.addCleanup(cluster.drop_database, name)
    return cluster.url(name)
