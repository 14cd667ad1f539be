"""
The transform vectors of wave-protocol.md section 9 (from WIAB's
DocOpTransformerTest), and the Java differential vectors in tests/data run
through wavebox.model.vectors, its API and its command line.
"""

import json
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

import wavebox
from wavebox.model.docop import transform
from wavebox.model.errors import TransformError
from wavebox.model.vectors import check_case, op_from_json, op_to_json, run_files

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(wavebox.__file__)))


class SectionNineTransformTests(SynchronousTestCase):
    """Each doc_op_transform case of section 9; 'reversible' ones also swapped."""

    def check(self, client, server, client_t, server_t, reversible):
        c, s = op_from_json(client), op_from_json(server)
        got_c, got_s = transform(c, s)
        self.assertEqual(op_to_json(got_c), client_t)
        self.assertEqual(op_to_json(got_s), server_t)
        if reversible:
            swapped_s, swapped_c = transform(s, c)
            self.assertEqual(op_to_json(swapped_c), client_t)
            self.assertEqual(op_to_json(swapped_s), server_t)

    def test_delete_before_delete(self):
        self.check([{"r": 1}, {"dc": "abcde"}, {"r": 14}],
                   [{"r": 7}, {"dc": "fg"}, {"r": 11}],
                   [{"r": 1}, {"dc": "abcde"}, {"r": 12}],
                   [{"r": 2}, {"dc": "fg"}, {"r": 11}], True)

    def test_overlapping_deletes(self):
        self.check([{"r": 1}, {"dc": "abcde"}, {"r": 14}],
                   [{"r": 3}, {"dc": "cdefghi"}, {"r": 10}],
                   [{"r": 1}, {"dc": "ab"}, {"r": 10}],
                   [{"r": 1}, {"dc": "fghi"}, {"r": 10}], True)

    def test_identical_deletes(self):
        self.check([{"r": 1}, {"dc": "abcdefg"}, {"r": 12}],
                   [{"r": 1}, {"dc": "abcdefg"}, {"r": 12}],
                   [{"r": 13}], [{"r": 13}], True)

    def test_insert_inside_deleted_text(self):
        self.check([{"r": 2}, {"c": "abc"}, {"r": 18}],
                   [{"r": 1}, {"dc": "ce"}, {"r": 17}],
                   [{"r": 1}, {"c": "abc"}, {"r": 17}],
                   [{"r": 1}, {"dc": "c"}, {"r": 3}, {"dc": "e"}, {"r": 17}], True)

    def test_inserts_at_same_position_client_goes_first(self):
        self.check([{"r": 2}, {"c": "abc"}, {"r": 18}],
                   [{"r": 2}, {"c": "123"}, {"r": 18}],
                   [{"r": 2}, {"c": "abc"}, {"r": 21}],
                   [{"r": 5}, {"c": "123"}, {"r": 18}], False)

    def test_replace_attributes_conflict_client_wins(self):
        self.check([{"r": 9}, {"ra": [{"name": "value"}, {"href": "http://www.google.com/"}]},
                    {"r": 10}],
                   [{"r": 9}, {"ra": [{"name": "value"}, {"name": "Google!"}]}, {"r": 10}],
                   [{"r": 9}, {"ra": [{"name": "Google!"}, {"href": "http://www.google.com/"}]},
                    {"r": 10}],
                   [{"r": 20}], False)

    def test_client_longer_than_server_is_a_transform_error(self):
        self.assertRaises(TransformError, transform, op_from_json([{"r": 1}]), op_from_json([]))


class JavaVectorFileTests(SynchronousTestCase):
    """Every case of the Java differential vectors agrees with us."""

    def run_file(self, name, expected_cases):
        passed, failed, lines = run_files([os.path.join(DATA, name)])
        self.assertEqual((failed, lines), (0, []))
        self.assertEqual(passed, expected_cases)

    def test_transform_vectors_all_agree_with_java(self):
        self.run_file("ot-transform-java.json", 800)

    def test_compose_vectors_all_agree_with_java(self):
        self.run_file("ot-compose-java.json", 500)

    def test_wellformedness_vectors_all_agree_with_java(self):
        self.run_file("ot-wellformed-java.json", 250)

    def test_transform_outputs_equal_java_component_for_component(self):
        with open(os.path.join(DATA, "ot-transform-java.json")) as f:
            cases = json.load(f)
        for case in cases[:: 7]:
            got_c, got_s = transform(op_from_json(case["client"]), op_from_json(case["server"]))
            self.assertEqual((op_to_json(got_c), op_to_json(got_s)),
                             (case["client_t"], case["server_t"]), "seed %s" % case["seed"])

    def test_check_case_reports_a_wrong_expected_result(self):
        with open(os.path.join(DATA, "ot-transform-java.json")) as f:
            case = json.load(f)[5]
        case["server_t"] = case["client_t"]
        problems = check_case(case)
        self.assertTrue(problems)
        self.assertTrue(any("differs from Java" in p or "apply" in p for p in problems))

    def test_check_case_reports_a_wrong_wellformedness_verdict(self):
        with open(os.path.join(DATA, "ot-wellformed-java.json")) as f:
            case = json.load(f)[0]
        case["well_formed"] = not case["well_formed"]
        self.assertIn("well_formed", check_case(case)[0])


class CommandLineTests(SynchronousTestCase):

    def run_cli(self, *paths):
        env = dict(os.environ, PYTHONPATH=ROOT)
        return subprocess.run([sys.executable, "-m", "wavebox.model.vectors"] + list(paths),
                              capture_output=True, text=True, env=env, timeout=120)

    def test_cli_summarises_a_clean_file(self):
        done = self.run_cli(os.path.join(DATA, "ot-wellformed-java.json"))
        self.assertEqual(done.returncode, 0)
        self.assertEqual(done.stdout, "250 passed, 0 failed\n")

    def test_cli_fails_and_names_the_case_on_a_corrupted_copy(self):
        with open(os.path.join(DATA, "ot-compose-java.json")) as f:
            cases = json.load(f)[:20]
        cases[3]["composed"] = [{"r": 1}] + cases[3]["composed"]
        corrupted = self.mktemp() + ".json"
        with open(corrupted, "w") as f:
            json.dump(cases, f)
        done = self.run_cli(corrupted)
        self.assertEqual(done.returncode, 1)
        lines = done.stdout.splitlines()
        self.assertEqual(lines[-1], "19 passed, 1 failed")
        self.assertEqual(len(lines), 2)
        self.assertIn("seed %s" % cases[3]["seed"], lines[0])
        self.assertIn("composed differs from Java", lines[0])
