#!/usr/bin/env python3
"""Joins the markdown tables of `cutune bench --sweep` and bench/pytorch_vgg16.py into one.

Reads every table row `| impl | precision | frozen | batch | img/s | ... |` from the files given
(or standard input) and prints, per (frozen, batch), the img/s of each (impl, precision) found
and the ratio of cutune's to each PyTorch column: the side-by-side table for RESULTS.md.

    python3 bench/compare_tables.py gpu-out/tables.md
"""
import sys


def rows(lines):
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 8 or cells[0] in ("impl", "---") or cells[0].startswith("-"):
            continue
        impl, precision, frozen, batch, ips = cells[:5]
        try:
            yield f"{impl} {precision}", frozen, int(batch), float(ips)
        except ValueError:  # OOM rows
            yield f"{impl} {precision}", frozen, int(batch), None


def main():
    lines = []
    for path in sys.argv[1:] or ["-"]:
        lines += (sys.stdin if path == "-" else open(path)).readlines()
    table, columns, keys = {}, [], []
    for col, frozen, batch, ips in rows(lines):
        if col not in columns:
            columns.append(col)
        if (frozen, batch) not in keys:
            keys.append((frozen, batch))
        table[(frozen, batch, col)] = ips
    if not columns:
        sys.exit("compare_tables.py: no table rows found")
    ours = [c for c in columns if c.startswith("cutune")]
    theirs = [c for c in columns if not c.startswith("cutune")]
    ratios = [(a, b) for a in ours for b in theirs]
    head = ["frozen", "batch"] + [f"{c} img/s" for c in columns] + \
           [f"{a} / {b}" for a, b in ratios]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))

    def fmt(v):
        return "-" if v is None else f"{v:.1f}"

    for frozen, batch in keys:
        cells = [frozen, str(batch)] + [fmt(table.get((frozen, batch, c))) for c in columns]
        for a, b in ratios:
            x, y = table.get((frozen, batch, a)), table.get((frozen, batch, b))
            cells.append("-" if not x or not y else f"{x / y:.2f}")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
