"""Synthetic-face throughput on one CPU core: generation alone and generation + writing the raw layout.

Run: ``.venv/bin/python benchmarks/bench_synth.py [--count 200] [--size 256] [--repeats 3]``

The process is pinned to one core. Both measurements run side by side in this process on the same
face ids, and the result is compared with the 50 images/s target. Writes the ``bench_synth`` section
of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _readme import machine, pin_one_core, today, update_section  # noqa: E402

from facesegm_utils import synthetic  # noqa: E402

TARGET = 50.0  # images/s at 256x256 on one core, files included


def bench(count: int, size: int, repeats: int) -> dict[str, float]:
    synthetic.generate_face(0, 0, size)  # warm the per-size texture cache
    gen, full = [], []
    for r in range(repeats):
        t = time.perf_counter()
        for k in range(count):
            synthetic.generate_face(r, k, size)
        gen.append(count / (time.perf_counter() - t))
        tmp = Path(tempfile.mkdtemp(prefix="bench_synth_"))
        try:
            t = time.perf_counter()
            synthetic.write_dataset(tmp, count=count, size=size, seed=r)
            full.append(count / (time.perf_counter() - t))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"gen": statistics.median(gen), "full": statistics.median(full)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-readme", action="store_true", help="print only, leave the README alone")
    args = parser.parse_args()
    pin_one_core()
    os.environ.setdefault("TQDM_DISABLE", "1")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    res = bench(args.count, args.size, args.repeats)
    cmd = f".venv/bin/python benchmarks/bench_synth.py --count {args.count} --size {args.size} --repeats {args.repeats}"
    md = "\n".join(
        [
            "## Synthetic faces (`bench_synth`)",
            "",
            f"Machine: {machine()}; pinned to one core. Date: {today()}. "
            f"Load average when it ran: {load:.1f} (other jobs share the machine; numbers drop under load).",
            f"Command: `{cmd}`",
            "",
            f"{args.count} faces at {args.size}x{args.size}, median of {args.repeats} runs, same process:",
            "",
            "| step | images/s | vs 50 img/s target |",
            "|---|---:|---:|",
            f"| generate only (`generate_face`) | {res['gen']:.1f} | {res['gen'] / TARGET:.2f}x |",
            f"| generate + write jpg/png atomically (`write_dataset`) | {res['full']:.1f} | "
            f"{res['full'] / TARGET:.2f}x |",
            "",
            f"Writing the files costs {100 * (1 - res['full'] / res['gen']):.0f}% of the throughput "
            "(about 14 masks + 1 JPEG per face, each written to a temp file and renamed).",
        ]
    )
    print(md)
    if not args.no_readme:
        update_section("bench_synth", md)


if __name__ == "__main__":
    main()
