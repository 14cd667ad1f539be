"""The tests' own PostgreSQL (tests/postgres.py): a cluster of ours, never the system's."""

import os
import subprocess

from twisted.trial import unittest

from tests.postgres import PostgresCluster, fresh_database, shared_cluster


def running(pid):
    """Alive and not a zombie (pg_ctl's server is reaped by init, whenever it likes)."""
    try:
        with open("/proc/%d/stat" % (pid,)) as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


class PostgresFixtureTests(unittest.SynchronousTestCase):

    def test_a_fresh_database_is_empty_and_dropped_after_the_test(self):
        cluster = shared_cluster()
        url = fresh_database(self)
        name = url.rpartition("/")[2]
        self.assertEqual(cluster.psql("SELECT count(*) FROM pg_tables WHERE schemaname = "
                                      "'public'", name), "0")
        self.assertIn(name, cluster.psql("SELECT datname FROM pg_database"))
        self.doCleanups()
        self.assertNotIn(name, cluster.psql("SELECT datname FROM pg_database"))

    def test_own_cluster_listens_on_loopback_and_stop_ends_every_process(self):
        cluster = PostgresCluster().start()
        self.addCleanup(cluster.stop)
        self.assertTrue(cluster.url().startswith("postgresql://wave@127.0.0.1:%d/"
                                                 % (cluster.port,)))
        pid = int(open(os.path.join(cluster.data, "postmaster.pid")).readline())
        self.assertEqual(cluster.psql("SHOW listen_addresses"), "127.0.0.1")
        cluster.stop()
        self.assertFalse(running(pid))
        self.assertNotIn(cluster.url(), subprocess.run(["ps", "axo", "args"],
                                                       capture_output=True, text=True).stdout)
