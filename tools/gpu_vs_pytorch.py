#!/usr/bin/env python3
"""Joins `softmax-wgpu bench --json` records with tools/pytorch_reference.py's, case by case
(op, dtype, rows, cols), into the side-by-side records of docs/gpu-vs-pytorch.json and a
Markdown table for docs/performance.md, and says which cases meet the real-GPU goals:
at least PyTorch's GB/s, and for rows >= 32 at least 0.85 of the device's copy bandwidth.

  python3 tools/gpu_vs_pytorch.py --ours ours.json --pytorch torch.json \\
      --json gpu-vs-pytorch.json --markdown gpu-vs-pytorch.md

Records of ours with no PyTorch twin (and the other way round) are listed, not dropped
silently. Only standard-library Python: it runs here and on the GPU's machine.
"""
import argparse
import json
import sys

COPY_GOAL = 0.85
COPY_GOAL_MIN_ROWS = 32


def load(path):
    with open(path) as f:
        return json.load(f)


def key(r):
    return (r["op"], r["dtype"], r["rows"], r["cols"])


def join(ours, torch_out, date=None):
    """Side-by-side records, one per case both sides timed, in ours' order; and the keys
    only one side has."""
    theirs = {key(r): r for r in torch_out["records"]}
    device_copy = torch_out.get("device_copy", {}).get("gbps")
    joined, only_ours = [], []
    for r in ours:
        t = theirs.get(key(r))
        if t is None:
            only_ours.append(key(r))
            continue
        if r["bytes"] != t["bytes"]:
            raise ValueError("{} {} {}x{}: ".format(*key(r)) + f"ours counts {r['bytes']} "
                             f"bytes, PyTorch's run {t['bytes']}: GB/s would not compare")
        ours_device = r.get("device_copy_gbps")
        joined.append({
            "device": torch_out["device"],
            "adapter": r["adapter"],
            "op": r["op"],
            "dtype": r["dtype"],
            "rows": r["rows"],
            "cols": r["cols"],
            "variant": r["variant"],
            "ours_gbps": r["gbps"],
            "pytorch_gbps": t["gbps"],
            "copy_gbps": r["copy_gbps"],
            "copy_method": r.get("copy_method"),
            "copy_spread": r.get("copy_spread"),
            "ratio_to_copy": r["ratio_to_copy"],
            "device_copy_gbps": ours_device,
            "ratio_to_device_copy": r["gbps"] / ours_device if ours_device else None,
            "pytorch_copy_gbps": t["copy_gbps"],
            "pytorch_copy_spread": t["copy_spread"],
            "pytorch_device_copy_gbps": device_copy,
            "ours_over_pytorch": r["gbps"] / t["gbps"],
            "torch": torch_out.get("torch"),
            "date": date or torch_out.get("date"),
        })
    seen = {key(r) for r in ours}
    only_theirs = [k for k in theirs if k not in seen]
    return joined, only_ours, only_theirs


def goals(rec):
    """Which goals the case misses: 'pytorch' (slower than PyTorch), 'copy' (rows >= 32 and
    below 0.85 of the device's copy)."""
    missed = []
    if rec["ours_gbps"] < rec["pytorch_gbps"]:
        missed.append("pytorch")
    ratio = rec["ratio_to_device_copy"]
    if rec["rows"] >= COPY_GOAL_MIN_ROWS and ratio is not None and ratio < COPY_GOAL:
        missed.append("copy")
    return missed


def markdown(joined):
    lines = [
        "| op | dtype | rows x cols | variant | ours GB/s | PyTorch GB/s | ours / PyTorch "
        "| ours / device copy | ratio to copy | missed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in joined:
        device = r["ratio_to_device_copy"]
        lines.append(
            f"| {r['op']} | {r['dtype']} | {r['rows']} x {r['cols']} | {r['variant']} "
            f"| {r['ours_gbps']:.1f} | {r['pytorch_gbps']:.1f} | {r['ours_over_pytorch']:.2f} "
            f"| {'-' if device is None else f'{device:.2f}'} | {r['ratio_to_copy']:.2f} "
            f"| {', '.join(goals(r)) or '-'} |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ours", required=True, help="softmax-wgpu bench --json output")
    p.add_argument("--pytorch", required=True, help="tools/pytorch_reference.py --json output")
    p.add_argument("--date", help="the date of the records (default: PyTorch's run)")
    p.add_argument("--json", help="write the side-by-side records here")
    p.add_argument("--markdown", help="write the Markdown table here")
    args = p.parse_args()
    try:
        joined, only_ours, only_theirs = join(load(args.ours), load(args.pytorch), args.date)
    except ValueError as e:
        sys.exit(f"error: {e}")
    if not joined:
        sys.exit("error: no case in common between the two files")
    table = markdown(joined)
    print(table, end="")
    for side, keys in (("ours", only_ours), ("PyTorch's", only_theirs)):
        if keys:
            print(f"only in {side}: " + ", ".join("{} {} {}x{}".format(*k) for k in keys))
    met = [r for r in joined if not goals(r)]
    print(f"{len(met)} of {len(joined)} cases meet both goals")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(joined, f, indent=1)
            f.write("\n")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
