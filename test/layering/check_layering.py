#!/usr/bin/env python3
"""Fails when a module includes a header of a layer it must not reach.

The layers and what each may include are the table under "## Layers" in
doc/internals.md, read from there so that the document and the check
cannot drift apart. A module is a name shared by include/sluice/NAME.h and
src/NAME.c; both files count as the module's. "libuv" in a row's "may
include" column allows <uv.h>. Every module found in the tree must be in
the table, and every module in the table that exists is checked.

Usage: check_layering.py SOURCE_ROOT
"""
import os
import re
import sys


def read_table(doc):
    text = open(doc, encoding="utf-8").read()
    m = re.search(r"^## Layers\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not m:
        sys.exit(f"{doc}: no '## Layers' section")
    rows = [l for l in m.group(1).splitlines() if l.startswith("|")]
    layers = []  # (name, modules, allowed layer names, libuv allowed)
    for row in rows[2:]:  # after the header and the --- line
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) != 3:
            sys.exit(f"{doc}: a Layers row needs 3 cells: {row}")
        name, mods, may = cells
        mods = [x.strip(" `") for x in mods.split(",") if x.strip()]
        may = [x.strip(" `") for x in may.split(",") if x.strip()]
        layers.append((name, mods, may))
    return layers


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    layers = read_table(os.path.join(root, "doc", "internals.md"))
    layer_of = {}
    for name, mods, _ in layers:
        for mod in mods:
            if mod in layer_of:
                sys.exit(f"module {mod} is in two layers")
            layer_of[mod] = name
    allowed = {}
    for name, _, may in layers:
        allowed[name] = set(may) | {name}
        for other in may:
            if other not in {n for n, _, _ in layers} and other != "libuv":
                sys.exit(f"layer {name} may include an unknown layer {other}")

    files = {}
    for d, ext in (("src", ".c"), (os.path.join("include", "sluice"), ".h")):
        for f in sorted(os.listdir(os.path.join(root, d))):
            if f.endswith(ext):
                files.setdefault(f[: -len(ext)], []).append(os.path.join(d, f))

    errors = []
    for mod, paths in sorted(files.items()):
        if mod not in layer_of:
            errors.append(f"{paths[0]}: module {mod} is in no row of the Layers table")
            continue
        layer = layer_of[mod]
        for path in paths:
            text = open(os.path.join(root, path), encoding="utf-8").read()
            for lineno, line in enumerate(text.splitlines(), 1):
                m = re.match(r'\s*#\s*include\s+"sluice/(\w+)\.h"', line)
                if m:
                    inc = m.group(1)
                    if inc == mod:
                        continue
                    if inc not in layer_of:
                        errors.append(f"{path}:{lineno}: includes {inc}.h, in no layer")
                    elif layer_of[inc] not in allowed[layer]:
                        errors.append(f"{path}:{lineno}: {mod} ({layer}) includes "
                                      f"{inc}.h ({layer_of[inc]})")
                elif re.match(r"\s*#\s*include\s+<uv\.h>", line) and "libuv" not in allowed[layer]:
                    errors.append(f"{path}:{lineno}: {mod} ({layer}) includes <uv.h>")
    for e in errors:
        print(e)
    print(f"{len(files)} modules, {len(errors)} layering error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
