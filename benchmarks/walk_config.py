"""How far a reader walks to follow ``config`` through ``training.train``: files, moves, climbs.

Run: ``.venv/bin/python benchmarks/walk_config.py [--rev main]`` (default: the working tree)

A static walk of the package's source (no import): start reading ``training.train``, and at each call
that passes the configuration or anything computed from it (names assigned from it, its attributes,
its methods' results), go read the called package function, depth first in source order, then come
back. A function read once is not read again. The reading place is recorded as a sequence of files;
a **move** is a change of file in it, a **climb** a move back up to a caller's file; consecutive calls
into one file are read in one trip. Reported: the files visited, the moves, the climbs, the visits per
file, the functions read and the deepest chain of calls below ``train``.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "facesegm_utils"


def _sources(rev: str | None) -> dict[str, str]:
    """Module name -> source, from the working tree or from git revision ``rev``."""
    if rev is None:
        return {p.stem: p.read_text() for p in (ROOT / PACKAGE).glob("*.py")}
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", rev, f"{PACKAGE}/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {
        Path(n).stem: subprocess.run(
            ["git", "show", f"{rev}:{n}"], cwd=ROOT, capture_output=True, text=True
        ).stdout
        for n in names
        if n.endswith(".py")
    }


class Package:
    """Each module's functions, classes' methods and imported names."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.funcs: dict[str, dict[str, ast.FunctionDef]] = {}
        self.methods: dict[str, dict[str, dict[str, ast.FunctionDef]]] = {}
        self.imports: dict[str, dict[str, tuple[str, str | None]]] = {}
        for mod, src in sources.items():
            tree = ast.parse(src)
            self.funcs[mod] = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
            self.methods[mod] = {
                c.name: {m.name: m for m in c.body if isinstance(m, ast.FunctionDef)}
                for c in tree.body
                if isinstance(c, ast.ClassDef)
            }
            imports: dict[str, tuple[str, str | None]] = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                    for alias in node.names:
                        if node.module == PACKAGE:  # from facesegm_utils import pipeline
                            imports[alias.asname or alias.name] = (alias.name, None)
                        else:  # from facesegm_utils.x import name
                            imports[alias.asname or alias.name] = (node.module.split(".")[1], alias.name)
            self.imports[mod] = imports

    def resolve(
        self, mod: str, call: ast.Call, tainted: set[str]
    ) -> tuple[str, ast.FunctionDef, bool] | None:
        """The package function a call runs: (module, definition, whether it is a method on a value)."""
        f = call.func
        if isinstance(f, ast.Name):
            if f.id in self.funcs[mod]:
                return mod, self.funcs[mod][f.id], False
            if f.id in self.methods[mod]:
                init = self.methods[mod][f.id].get("__init__")
                return (mod, init, True) if init else None
            target = self.imports[mod].get(f.id)
            if target and target[1] is not None and target[0] in self.funcs:
                other, name = target
                if name in self.funcs[other]:
                    return other, self.funcs[other][name], False
                init = self.methods[other].get(name, {}).get("__init__")
                return (other, init, True) if init else None
            return None
        if not isinstance(f, ast.Attribute) or not isinstance(f.value, ast.Name):
            return None
        base = f.value.id
        target = self.imports[mod].get(base)
        if target and target[1] is None and target[0] in self.funcs:  # module.function
            fn = self.funcs[target[0]].get(f.attr)
            return (target[0], fn, False) if fn else None
        owner = target if target and target[1] is not None else (mod, base)
        if owner[0] in self.methods and owner[1] in self.methods[owner[0]]:  # Class.method
            fn = self.methods[owner[0]][owner[1]].get(f.attr)
            return (owner[0], fn, False) if fn else None
        if base in tainted:  # value.method: the one package class defining it
            found = [(m, c[f.attr]) for m, cls in self.methods.items() for c in cls.values() if f.attr in c]
            if len(found) == 1:
                return found[0][0], found[0][1], True
        return None


def _is_config(node: ast.AST | None, tainted: set[str]) -> bool:
    """Whether ``node`` is the configuration or a piece of it: a tainted name, ``name.attr...``, or a
    conditional expression with such a branch (``cfg = A if c else config``)."""
    while isinstance(node, ast.Attribute):
        node = node.value
    if isinstance(node, ast.IfExp):
        return _is_config(node.body, tainted) or _is_config(node.orelse, tainted)
    return isinstance(node, ast.Name) and node.id in tainted


def _taint(fn: ast.FunctionDef, tainted: set[str]) -> set[str]:
    """The local names that hold the configuration (assigned from it as a whole, flow-insensitive)."""
    tainted = set(tainted)
    while True:
        before = len(tainted)
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Name, ast.IfExp)):
                if _is_config(node.value, tainted):
                    tainted |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        if len(tainted) == before:
            return tainted


def walk(pkg: Package, start: tuple[str, str], param: str) -> tuple[list[str], list[str], int]:
    """The files the reader is in, in order (with repeats), the functions read and the deepest call
    chain below ``start``. Consecutive calls into one file are read in one trip."""
    seen: set[int] = set()
    places: list[str] = []
    read: list[str] = []
    depths: list[int] = []

    def visit(mod: str, fn: ast.FunctionDef, tainted_params: set[str], depth: int) -> None:
        seen.add(id(fn))
        read.append(f"{mod}.{fn.name}")
        depths.append(depth)
        places.append(mod)
        last_trip: str | None = None  # the file of the previous trip, while the reader is still in it
        tainted = _taint(fn, tainted_params)
        calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call)]
        nested = {
            id(n) for d in ast.walk(fn) if isinstance(d, ast.FunctionDef) and d is not fn for n in ast.walk(d)
        }
        for call in sorted((c for c in calls if id(c) not in nested), key=lambda c: (c.lineno, c.col_offset)):
            method_on_config = isinstance(call.func, ast.Attribute) and _is_config(call.func.value, tainted)
            if not (
                method_on_config
                or any(_is_config(a, tainted) for a in [*call.args, *(k.value for k in call.keywords)])
            ):
                continue
            hit = pkg.resolve(mod, call, tainted)
            if hit is None or id(hit[1]) in seen:
                continue
            callee_mod, callee, bound = hit
            params = [a.arg for a in callee.args.posonlyargs + callee.args.args]
            if bound or (params and params[0] in ("self", "cls")):
                first, params = params[:1], params[1:]
            else:
                first = []
            passed = {
                params[i] for i, a in enumerate(call.args) if i < len(params) and _is_config(a, tainted)
            }
            passed |= {k.arg for k in call.keywords if k.arg and _is_config(k.value, tainted)}
            if bound:
                passed |= set(first)
            if last_trip is not None and last_trip != callee_mod:
                places.append(mod)  # back to this function before the next trip elsewhere
            visit(callee_mod, callee, passed, depth + 1)
            last_trip = places[-1]
        if last_trip is not None:
            places.append(mod)  # back to finish reading this function

    visit(start[0], pkg.funcs[start[0]][start[1]], {param}, 0)
    return places, read, max(depths)


def measure(rev: str | None) -> dict[str, object]:
    places, read, depth = walk(Package(_sources(rev)), ("training", "train"), "config")
    stops = [m for i, m in enumerate(places) if i == 0 or m != places[i - 1]]
    stack: list[str] = []
    climbs = 0
    # a move back to a file still being read further up the call chain is a climb
    for m in stops:
        if m in stack:
            climbs += 1
            del stack[stack.index(m) + 1 :]
        else:
            stack.append(m)
    return {
        "files": len(set(stops)),
        "moves": len(stops) - 1,
        "climbs": climbs,
        "visits": dict(Counter(stops).most_common()),
        "functions": len(read),
        "depth": depth,
        "read": read,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default=None, help="a git revision (default: the working tree)")
    parser.add_argument("--list", action="store_true", help="print the functions read, in order")
    args = parser.parse_args()
    result = measure(args.rev)
    print(
        f"{args.rev or 'working tree'}: {result['files']} files, {result['moves']} moves, "
        f"{result['climbs']} climbs, {result['functions']} functions read, call chains {result['depth']} deep; "
        f"visits per file {result['visits']}"
    )
    if args.list:
        print("\n".join(result["read"]))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
