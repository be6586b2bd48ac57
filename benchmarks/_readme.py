"""Shared by the benchmark scripts: replace one benchmark's section of ``benchmarks/README.md``.

Each script owns the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` and rewrites
only that, so the scripts can be run in any order. Also collects machine facts for the table header.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def machine() -> str:
    """One line naming the machine: CPU model, cores, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, Python {sys.version.split()[0]}, {platform.system()}"


def pin_one_core() -> None:
    """Pin this process to one CPU (where the OS allows it), for one-core figures."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def today() -> str:
    return _dt.date.today().isoformat()


def update_section(name: str, markdown: str, readme: Path = README) -> None:
    """Replace (or append) the section ``name`` of the benchmarks README with ``markdown``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = readme.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, readme)
