"""
The browser's OT (wavebox/web/static/ot, issue 14) run under Node:

* it agrees with every case of the Java-generated vectors (tests/data, the
  same files as shared/vectors), as the server's Python model does;
* the client side of the Wave/Jupiter protocol converges: simulated web
  clients (the real state machine, in one node process) type, mark up and
  change participants concurrently while this test plays the server with the
  real Python model (transform_delta, applied-delta bytes and history
  hashes, WaveletState), delivering messages late and out of order; at the
  end every client shows exactly the server's wavelet at its version;
* the particular rules: one delta in flight, typing meanwhile composed into
  the next delta, incoming deltas transformed so the local text keeps its
  place, the acknowledgement (or the echo) moving the version on.

Node is Debian's nodejs (.ci/run installs it); without it these tests fail.
"""

import json
import os
import random
import shutil
import subprocess
import tempfile
from collections import deque

from twisted.trial.unittest import SynchronousTestCase

from wavebox.model.conversation import append_blip_ops, create_wave_ops
from wavebox.model.delta import SignedDelta, TransformedDelta, WaveletDelta
from wavebox.model.docop import Document
from wavebox.model.ids import WaveletName
from wavebox.model.operations import AddParticipant, MutateDocument, transform_delta
from wavebox.model.wavelet import WaveletState
from wavebox.server.interfaces import SubmitResult
from wavebox.web import ops_json
from wavebox.wire.convert import build_applied_delta, serialize_wavelet_delta

TESTS = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(TESTS, "data")
VECTOR_FILES = [os.path.join(DATA, name) for name in
                ("ot-transform-java.json", "ot-compose-java.json", "ot-wellformed-java.json")]
VECTORS_SCRIPT = os.path.join(TESTS, "web", "ot_vectors.mjs")
CLIENTS_SCRIPT = os.path.join(TESTS, "web", "ot_clients.mjs")

#: Generous: this machine's two cores are shared.
NODE_TIMEOUT = 300


def node(testcase):
    path = shutil.which("node")
    if path is None:
        testcase.fail("node is not installed: the browser's OT is tested under Node "
                      "(Debian's nodejs, which .ci/run installs)")
    return path


def run_vectors(testcase, files):
    return subprocess.run([node(testcase), VECTORS_SCRIPT, *files], capture_output=True,
                          text=True, timeout=NODE_TIMEOUT)


class JavaVectorTests(SynchronousTestCase):
    """Every case of every vector file, through the browser's modules."""

    def test_every_java_vector_case_agrees(self):
        cases = {}
        for path in VECTOR_FILES:
            with open(path, encoding="utf-8") as f:
                cases[path] = len(json.load(f))
        done = run_vectors(self, VECTOR_FILES)
        self.assertEqual(done.returncode, 0, done.stdout[-4000:] + done.stderr[-4000:])
        lines = done.stdout.splitlines()
        for path, count in cases.items():
            self.assertIn(f"{path}: {count} passed, 0 failed", lines)
        total = sum(cases.values())
        self.assertEqual(total, 1550)
        self.assertEqual(lines[-1], f"{total} passed, 0 failed")

    def test_the_vectors_here_are_the_shared_ones(self):
        # tests/data keeps the shared vectors in the repository; where the
        # shared folder is beside the checkout (a developer's machine, CI),
        # the files must be the same bytes, so every case above is theirs.
        shared = os.path.join(os.path.dirname(os.path.dirname(TESTS)), "shared", "vectors")
        if os.path.isdir(shared):
            for path in VECTOR_FILES:
                with open(path, "rb") as ours, \
                        open(os.path.join(shared, os.path.basename(path)), "rb") as theirs:
                    self.assertEqual(ours.read(), theirs.read(), path)

    def test_the_vector_runner_reports_a_case_that_disagrees(self):
        # One Java result changed: a runner that passed it would prove nothing.
        with open(VECTOR_FILES[0], encoding="utf-8") as f:
            cases = json.load(f)[:20]
        cases[3]["client_t"] = cases[3]["server_t"]
        cases[7]["result"] = cases[7]["doc"]
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, "altered.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(cases, f)
            done = run_vectors(self, [path])
        self.assertEqual(done.returncode, 1)
        self.assertEqual(done.stdout.splitlines()[-1], "18 passed, 2 failed")
        self.assertIn(f"seed {cases[3]['seed']} ", done.stdout)
        self.assertIn(f"seed {cases[7]['seed']} ", done.stdout)


# --------------------------------------------------------------------------
# The server, played with the real model


class ModelServer:
    """
    The host's submit path at model level, as LocalWaveletContainer runs it:
    transform_delta against the history since the delta's target, the
    applied delta's bytes and the history hash over them, the state applied.
    """

    def __init__(self, name):
        self.state = WaveletState(name)
        self.history = []
        self.clock = 1_000_000

    def submit(self, delta):
        """(TransformedDelta or None for a duplicate, SubmitResult)."""
        current = self.state.hashed_version
        history = [d for d in self.history if d.applied_at.version >= delta.hashed_version.version]
        result = transform_delta(delta, history, current)
        if result.is_duplicate:
            done = result.duplicate_of
            return None, SubmitResult(len(done.operations), done.resulting_version,
                                      done.application_timestamp, duplicate=True)
        self.clock += 1
        signed = SignedDelta(serialize_wavelet_delta(delta), ())
        applied = build_applied_delta(signed, current, len(result.operations), self.clock)
        transformed = TransformedDelta(delta.author, current, applied.resulting_version,
                                       result.operations, self.clock)
        self.state.apply_delta(transformed)
        self.history.append(transformed)
        return transformed, SubmitResult(len(transformed.operations),
                                         transformed.resulting_version, self.clock)

    def local_delta(self, author, operations):
        delta = WaveletDelta(author, self.state.hashed_version, operations)
        return self.submit(delta)


AUTHORS = ["ann@example.com", "bob@example.com", "cat@example.org"]
NAME = WaveletName.of("example.com", "w+live", "example.com", "conv+root")


def new_server(authors=AUTHORS, blips=(("b+1", "hello world"), ("b+2", "second blip"))):
    server = ModelServer(NAME)
    server.local_delta(authors[0], create_wave_ops(authors[0])
                       + [AddParticipant(a) for a in authors[1:]])
    for blip_id, text in blips:
        server.local_delta(authors[0], append_blip_ops(server.state, blip_id, text))
    return server


class NodeClients:
    """The node process holding the simulated clients; one JSON line each way per command."""

    def __init__(self, testcase):
        self.process = subprocess.Popen(
            [node(testcase), CLIENTS_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8", bufsize=1)
        testcase.addCleanup(self.close)
        self.commands = 0

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()

    def call(self, cmd, **fields):
        self.process.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError("the node clients ended: " + self.process.stderr.read())
        self.commands += 1
        return json.loads(line)

    def ok(self, cmd, **fields):
        answer = self.call(cmd, **fields)
        if not answer["ok"]:
            raise AssertionError(f"{cmd} {fields}: {answer['error']}")
        return answer


def check_delta_shape(testcase, delta):
    """What a client sends: one mutation per document; a participant change alone."""
    kinds = [type(op) for op in delta.operations]
    if any(k is not MutateDocument for k in kinds):
        testcase.assertEqual(len(kinds), 1, delta)
    ids = [op.document_id for op in delta.operations if isinstance(op, MutateDocument)]
    testcase.assertEqual(len(ids), len(set(ids)), delta)


def assert_shows_server(testcase, clients, i, server):
    state = clients.ok("state", client=i)
    testcase.assertTrue(state["idle"], state)
    testcase.assertEqual(state["waiting"], 0)
    testcase.assertEqual(state["version"], ops_json.hashed_version_to_json(
        server.state.hashed_version))
    wavelet = state["wavelet"]
    # The same participants; the order of two concurrent additions is the
    # order each client heard of them (the server's list is the order it
    # applied them), as with Wave in a Box's client.
    testcase.assertEqual(sorted(wavelet["participants"]),
                         sorted(p.address for p in server.state.participants))
    testcase.assertEqual(sorted(wavelet["documents"]), sorted(server.state.documents))
    for doc_id, op in wavelet["documents"].items():
        shown = Document.from_op(ops_json.docop_from_json(op))
        testcase.assertEqual(shown, server.state.documents[doc_id], f"client {i}, {doc_id}")
    return state


class Network:
    """
    Messages between the clients and the server, each queue delivered one
    message at a time when the schedule says.  ``echo``: the submitter is
    also sent its own delta, as every other client is; ``shuffle_acks``: an
    acknowledgement may overtake the deltas queued before it; ``reorder``:
    any of the next three messages to a client may come first.
    """

    def __init__(self, testcase, clients, server, rng, echo, shuffle_acks, reorder):
        self.testcase = testcase
        self.clients = clients
        self.server = server
        self.rng = rng
        self.echo = echo
        self.shuffle_acks = shuffle_acks
        self.reorder = reorder
        n = len(AUTHORS)
        self.up = [deque() for _ in range(n)]
        self.down = [[] for _ in range(n)]
        self.unheard = [set() for _ in range(n)]   # own deltas not yet acknowledged or echoed
        self.sent = 0
        self.transformed = 0

    def send(self, i):
        delta = self.clients.ok("take", client=i)["delta"]
        if delta is None:
            return
        # One delta in flight: the client heard of its previous one first.
        self.testcase.assertEqual(self.unheard[i], set())
        self.testcase.assertFalse(self.up[i])
        self.sent += 1
        tag = self.sent
        self.unheard[i].add(tag)
        self.up[i].append((tag, delta))

    def deliver_up(self, i):
        if not self.up[i]:
            return
        tag, raw = self.up[i].popleft()
        delta = ops_json.delta_from_json(raw)
        check_delta_shape(self.testcase, delta)
        if delta.hashed_version != self.server.state.hashed_version:
            self.transformed += 1
        transformed, result = self.server.submit(delta)
        self.testcase.assertIsNotNone(transformed, "no client resubmits")
        update = ("delta", ops_json.transformed_delta_to_json(transformed), None)
        for j, queue in enumerate(self.down):
            if j != i:
                queue.append(update)
        mine = self.down[i]
        if self.echo:
            mine.append(("delta", update[1], tag))
        ack = ("ack", ops_json.submit_result_to_json(result), tag)
        if self.shuffle_acks and mine:
            mine.insert(self.rng.randrange(len(mine) + 1), ack)
        else:
            mine.append(ack)

    def deliver_down(self, i):
        if not self.down[i]:
            return
        first = self.rng.randrange(min(3, len(self.down[i]))) if self.reorder else 0
        kind, body, tag = self.down[i].pop(first)
        if kind == "delta":
            self.clients.ok("delta", client=i, delta=body)
        else:
            self.clients.ok("ack", client=i, result=body)
        self.unheard[i].discard(tag)

    def quiet(self):
        return not any(self.up) and not any(self.down)

    def drain(self):
        for _ in range(1000):
            for i in range(len(AUTHORS)):
                self.send(i)
            order = list(range(len(AUTHORS)))
            self.rng.shuffle(order)
            for i in order:
                while self.up[i]:
                    self.deliver_up(i)
            for i in order:
                while self.down[i]:
                    self.deliver_down(i)
            if self.quiet() and all(self.clients.ok("state", client=i)["idle"]
                                    for i in range(len(AUTHORS))):
                return
        self.testcase.fail("the clients did not come to rest")


class ConvergenceTests(SynchronousTestCase):
    """Random concurrent edits by three clients, the server ordering them."""

    RUNS = int(os.environ.get("WEB_OT_RUNS", "100"))
    STEPS = 160

    def run_one(self, clients, seed, echo, shuffle_acks, reorder):
        rng = random.Random(seed)
        server = new_server()
        clients.ok("init", clients=AUTHORS, wavelet=ops_json.wavelet_to_json(server.state))
        net = Network(self, clients, server, rng, echo, shuffle_acks, reorder)
        edits = 0
        for _ in range(self.STEPS):
            i = rng.randrange(len(AUTHORS))
            r = rng.random()
            if r < 0.4:
                clients.ok("edit", client=i, seed=rng.randrange(2 ** 32))
                edits += 1
            elif r < 0.55:
                net.send(i)
            elif r < 0.7:
                net.deliver_up(i)
            else:
                net.deliver_down(i)
        net.drain()
        texts = set()
        for i in range(len(AUTHORS)):
            state = assert_shows_server(self, clients, i, server)
            texts.add(json.dumps(state["text"], sort_keys=True))
        self.assertEqual(len(texts), 1)
        return edits, net.sent, net.transformed

    def test_clients_converge_on_the_servers_wavelet(self):
        clients = NodeClients(self)
        totals = [0, 0, 0]
        modes = [(False, False, False), (True, False, False), (False, True, False),
                 (True, True, False), (False, False, True), (True, False, True)]
        for run in range(self.RUNS):
            edits, sent, transformed = self.run_one(clients, 7000 + run, *modes[run % len(modes)])
            totals = [t + x for t, x in zip(totals, (edits, sent, transformed))]
        edits, sent, transformed = totals
        # The schedule really was concurrent: many deltas met others in the server.
        self.assertGreater(edits, 30 * self.RUNS)
        self.assertGreater(transformed, sent // 4)


# --------------------------------------------------------------------------
# The rules, one by one


def ins(doc_id, at, text, size):
    op = [{"r": at}] if at else []
    op.append({"c": text})
    if size - at:
        op.append({"r": size - at})
    return {"mutate_document": {"document_id": doc_id, "operation": op}}


class JupiterRuleTests(SynchronousTestCase):

    def setUp(self):
        self.server = new_server(blips=(("b+1", "abc"),))
        self.clients = NodeClients(self)
        self.clients.ok("init", clients=AUTHORS,
                        wavelet=ops_json.wavelet_to_json(self.server.state))
        # <body><line></line>abc</body>: 7 items, the text at 3..5.
        self.size = self.server.state.documents["b+1"].size

    def text(self, i):
        return self.clients.ok("state", client=i)["text"]["b+1"]

    def submit(self, raw):
        return self.server.submit(ops_json.delta_from_json(raw))

    def test_typing_meanwhile_is_composed_into_the_next_delta(self):
        c = self.clients
        c.ok("local", client=0, op=ins("b+1", 6, "!", self.size))
        first = c.ok("take", client=0)["delta"]
        for k, ch in enumerate("defg"):
            c.ok("local", client=0, op=ins("b+1", 7 + k, ch, self.size + 1 + k))
        self.assertIsNone(c.ok("take", client=0)["delta"], "a second delta while one is in flight")
        _, result = self.submit(first)
        c.ok("ack", client=0, result=ops_json.submit_result_to_json(result))
        second = c.ok("take", client=0)["delta"]
        self.assertEqual(second["hashed_version"],
                         ops_json.hashed_version_to_json(self.server.state.hashed_version))
        [op] = second["operations"]
        self.assertEqual(op["mutate_document"]["operation"],
                         [{"r": 7}, {"c": "defg"}, {"r": 1}])
        self.submit(second)
        self.assertEqual(self.server.state.documents["b+1"].text(), "abc!defg")

    def test_incoming_delta_is_transformed_against_in_flight_and_gathered_ones(self):
        c = self.clients
        c.ok("local", client=0, op=ins("b+1", 6, "X", self.size))      # abcX, in flight
        mine = c.ok("take", client=0)["delta"]
        c.ok("local", client=0, op=ins("b+1", 7, "Y", self.size + 1))  # abcXY, gathered
        # Meanwhile bob's insertion at the start reaches the server first.
        theirs, _ = self.server.local_delta(AUTHORS[1], [
            ops_json.operation_from_json(ins("b+1", 3, "bob ", self.size))])
        applied = c.ok("delta", client=0,
                       delta=ops_json.transformed_delta_to_json(theirs))["applied"]
        # Ann's text keeps her characters where she typed them.
        self.assertEqual(self.text(0), "<body><line></line>bob abcXY</body>")
        self.assertEqual(applied[0]["mutate_document"]["operation"],
                         [{"r": 3}, {"c": "bob "}, {"r": 6}])
        _, result = self.submit(mine)
        c.ok("ack", client=0, result=ops_json.submit_result_to_json(result))
        _, result = self.submit(c.ok("take", client=0)["delta"])
        c.ok("ack", client=0, result=ops_json.submit_result_to_json(result))
        self.assertEqual(self.server.state.documents["b+1"].text(), "bob abcXY")
        assert_shows_server(self, c, 0, self.server)

    def test_tie_at_the_same_place_goes_the_way_the_server_goes(self):
        c = self.clients
        c.ok("local", client=0, op=ins("b+1", 6, "A", self.size))
        c.ok("local", client=1, op=ins("b+1", 6, "B", self.size))
        a = c.ok("take", client=0)["delta"]
        b = c.ok("take", client=1)["delta"]
        ta, ra = self.submit(a)
        tb, rb = self.submit(b)
        c.ok("ack", client=0, result=ops_json.submit_result_to_json(ra))
        c.ok("delta", client=0, delta=ops_json.transformed_delta_to_json(tb))
        c.ok("delta", client=1, delta=ops_json.transformed_delta_to_json(ta))
        c.ok("ack", client=1, result=ops_json.submit_result_to_json(rb))
        self.assertEqual(self.server.state.documents["b+1"].text(), "abcBA")
        for i in (0, 1):
            assert_shows_server(self, c, i, self.server)

    def test_an_acknowledgement_ahead_of_a_delta_waits_for_it(self):
        c = self.clients
        c.ok("local", client=0, op=ins("b+1", 3, "<", self.size))
        mine = c.ok("take", client=0)["delta"]
        theirs, _ = self.server.local_delta(AUTHORS[1], [
            ops_json.operation_from_json(ins("b+1", 6, ">", self.size))])
        _, result = self.submit(mine)
        answer = c.ok("ack", client=0, result=ops_json.submit_result_to_json(result))
        self.assertEqual(answer["applied"], [])
        state = c.ok("state", client=0)
        self.assertEqual((state["waiting"], state["in_flight"]), (1, True))
        applied = c.ok("delta", client=0,
                       delta=ops_json.transformed_delta_to_json(theirs))["applied"]
        self.assertEqual(applied[0]["mutate_document"]["operation"],
                         [{"r": 7}, {"c": ">"}, {"r": 1}])
        assert_shows_server(self, c, 0, self.server)

    def test_the_echo_of_our_delta_is_taken_as_its_acknowledgement(self):
        c = self.clients
        c.ok("local", client=0, op=ins("b+1", 3, "e", self.size))
        transformed, result = self.submit(c.ok("take", client=0)["delta"])
        applied = c.ok("delta", client=0,
                       delta=ops_json.transformed_delta_to_json(transformed))["applied"]
        self.assertEqual(applied, [], "our own characters applied twice")
        self.assertFalse(c.ok("state", client=0)["in_flight"])
        c.ok("ack", client=0, result=ops_json.submit_result_to_json(result))
        assert_shows_server(self, c, 0, self.server)
        self.assertEqual(self.text(0), "<body><line></line>eabc</body>")

    def test_integer_like_annotation_keys_survive_javascripts_key_order(self):
        # JSON.parse lists "9" before "10"; Java order is "10" before "9".
        c = self.clients
        marks = ops_json.docop_from_json([
            {"r": 3}, {"ab": {"change": {"10": [None, "x"], "9": [None, "y"]}}}, {"r": 1},
            {"ab": {"end": ["10", "9"]}}, {"r": 3}])
        theirs, _ = self.server.local_delta(AUTHORS[1], [MutateDocument("b+1", marks)])
        raw = ops_json.transformed_delta_to_json(theirs)
        self.assertEqual(list(raw["operations"][0]["mutate_document"]["operation"][1]["ab"]
                              ["change"]), ["10", "9"])
        c.ok("delta", client=0, delta=raw)
        assert_shows_server(self, c, 0, self.server)

    def test_a_refused_delta_stops_the_client(self):
        c = self.clients
        c.ok("local", client=0, op=ins("b+1", 3, "r", self.size))
        c.ok("take", client=0)
        refused = c.call("refuse", client=0, reason="ann is not a participant")
        self.assertFalse(refused["ok"])
        self.assertIn("the server refused our delta: ann is not a participant", refused["error"])
        typed = c.call("local", client=0, op=ins("b+1", 4, "s", self.size + 1))
        self.assertIn("ClientStateError", typed["error"])

    def test_a_different_history_hash_stops_the_client(self):
        c = self.clients
        theirs, _ = self.server.local_delta(AUTHORS[1], [
            ops_json.operation_from_json(ins("b+1", 3, "z", self.size))])
        raw = ops_json.transformed_delta_to_json(theirs)
        raw["applied_at"]["history_hash"] = ops_json.hashed_version_to_json(
            theirs.resulting_version)["history_hash"]
        answer = c.call("delta", client=0, delta=raw)
        self.assertFalse(answer["ok"])
        self.assertIn("history differs from ours at version", answer["error"])
        take = c.call("take", client=0)
        self.assertFalse(take["ok"])
        self.assertIn("ClientStateError", take["error"])
        again = c.call("ack", client=0, result=ops_json.submit_result_to_json(
            SubmitResult(1, theirs.resulting_version, 0)))
        self.assertFalse(again["ok"])
