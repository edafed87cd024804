"""Tests of tools/gpu_vs_pytorch.py, which need no GPU (CI runs them: .ci/test).

    python3 -m unittest discover -s tools -p 'test_*.py'
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import gpu_vs_pytorch as g  # noqa: E402
import pytorch_reference as ref  # noqa: E402


def nbytes(op, rows, cols, dtype):
    return ref.case_bytes(op, rows, cols, 2 if dtype == "f16" else 4)


def ours(op, rows, cols, gbps, device=2000.0, dtype="f32"):
    """A record as `softmax-wgpu bench --json` writes it (the fields the join reads)."""
    return {"adapter": "NVIDIA H200 (Vulkan)", "op": op, "dtype": dtype, "rows": rows,
            "cols": cols, "variant": "online", "gbps": gbps, "bytes": nbytes(op, rows, cols, dtype), "copy_gbps": 2500.0,
            "copy_method": "copy_buffer_to_buffer", "copy_spread": 0.03,
            "ratio_to_copy": gbps / 2500.0, "device_copy_gbps": device}


def theirs(op, rows, cols, gbps, dtype="f32"):
    """A record as tools/pytorch_reference.py writes it."""
    return {"op": op, "dtype": dtype, "rows": rows, "cols": cols, "gbps": gbps,
            "bytes": nbytes(op, rows, cols, dtype),
            "copy_gbps": 2400.0, "copy_spread": 0.05}


TORCH = {"device": "NVIDIA H200", "torch": "2.11.0", "date": "2026-12-03",
         "device_copy": {"gbps": 4300.0}, "records": []}


class Join(unittest.TestCase):
    def test_cases_pair_by_op_dtype_and_shape(self):
        mine = [ours("softmax", 256, 32000, 1800.0), ours("softmax", 256, 32000, 900.0, dtype="f16"),
                ours("logsumexp", 1, 262144, 300.0)]
        torch_out = dict(TORCH, records=[theirs("softmax", 256, 32000, 1500.0),
                                         theirs("softmax", 256, 32000, 1000.0, dtype="f16"),
                                         theirs("cross-entropy", 32, 32000, 400.0)])
        joined, only_ours, only_theirs = g.join(mine, torch_out)
        self.assertEqual([(r["dtype"], r["ours_gbps"], r["pytorch_gbps"]) for r in joined],
                         [("f32", 1800.0, 1500.0), ("f16", 900.0, 1000.0)])
        self.assertEqual(only_ours, [("logsumexp", "f32", 1, 262144)])
        self.assertEqual(only_theirs, [("cross-entropy", "f32", 32, 32000)])
        first = joined[0]
        for field in ("device", "op", "dtype", "rows", "cols", "variant", "ours_gbps",
                      "pytorch_gbps", "copy_gbps", "date"):
            self.assertIn(field, first)
        self.assertEqual(first["device"], "NVIDIA H200")
        self.assertEqual(first["date"], "2026-12-03")
        self.assertAlmostEqual(first["ours_over_pytorch"], 1.2)
        self.assertAlmostEqual(first["ratio_to_device_copy"], 0.9)

    def test_byte_counts_that_differ_are_refused(self):
        mine = [ours("softmax", 256, 32000, 1800.0)]
        other = dict(theirs("softmax", 256, 32000, 1500.0), bytes=1)
        with self.assertRaisesRegex(ValueError, "softmax f32 256x32000"):
            g.join(mine, dict(TORCH, records=[other]))

    def test_the_reference_counts_the_bytes_the_bench_counts(self):
        # Case::bytes (src/bench/case.rs): 256 x 32000 f32 is 32768000 bytes of logits.
        n = 256 * 32000 * 4
        self.assertEqual(ref.case_bytes("softmax", 256, 32000, 4), 2 * n)
        self.assertEqual(ref.case_bytes("logsumexp", 256, 32000, 4), n + 4 * 256)
        self.assertEqual(ref.case_bytes("cross-entropy", 256, 32000, 4), 2 * n + 12 * 256)
        self.assertEqual(ref.case_bytes("softmax-backward", 256, 32000, 4), 3 * n)
        self.assertEqual(ref.parse_shapes("1x262144,256X32000"), [(1, 262144), (256, 32000)])
        self.assertAlmostEqual(ref.spread([1.0, 1.1, 1.05]), 0.1 / 1.05)

    def test_goals_name_what_a_case_misses(self):
        fast = g.join([ours("softmax", 256, 32000, 1800.0)],
                      dict(TORCH, records=[theirs("softmax", 256, 32000, 1500.0)]))[0][0]
        self.assertEqual(g.goals(fast), [])
        slow = g.join([ours("softmax", 256, 32000, 1600.0)],
                      dict(TORCH, records=[theirs("softmax", 256, 32000, 1700.0)]))[0][0]
        self.assertEqual(g.goals(slow), ["pytorch", "copy"])
        # Below 32 rows only PyTorch's speed is a goal.
        one = g.join([ours("softmax", 1, 262144, 100.0)],
                     dict(TORCH, records=[theirs("softmax", 1, 262144, 30.0)]))[0][0]
        self.assertEqual(g.goals(one), [])
        self.assertIn("| softmax | f32 | 1 x 262144 | online | 100.0 | 30.0 | 3.33 |",
                      g.markdown([one]))

    def test_the_command_writes_both_files_and_refuses_disjoint_inputs(self):
        with tempfile.TemporaryDirectory() as d:
            path = lambda name: os.path.join(d, name)  # noqa: E731
            json.dump([ours("softmax", 256, 32000, 1800.0)], open(path("o.json"), "w"))
            json.dump(dict(TORCH, records=[theirs("softmax", 256, 32000, 1500.0)]),
                      open(path("t.json"), "w"))
            tool = os.path.join(os.path.dirname(__file__), "gpu_vs_pytorch.py")
            run = subprocess.run([sys.executable, tool, "--ours", path("o.json"), "--pytorch",
                                  path("t.json"), "--json", path("j.json"), "--markdown",
                                  path("j.md")], capture_output=True, text=True)
            self.assertEqual(run.returncode, 0, run.stderr)
            self.assertIn("1 of 1 cases meet both goals", run.stdout)
            self.assertEqual(len(json.load(open(path("j.json")))), 1)
            self.assertTrue(open(path("j.md")).read().startswith("| op |"))
            json.dump(dict(TORCH, records=[theirs("softmax", 32, 32000, 1.0)]),
                      open(path("t.json"), "w"))
            run = subprocess.run([sys.executable, tool, "--ours", path("o.json"), "--pytorch",
                                  path("t.json")], capture_output=True, text=True)
            self.assertNotEqual(run.returncode, 0)
            self.assertIn("no case in common", run.stderr)


if __name__ == "__main__":
    unittest.main()
