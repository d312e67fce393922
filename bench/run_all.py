"""Run every benchmark and print its tables (Markdown): ``python -m bench.run_all [--quick]``.

``make bench`` runs this. ``--only read_path,extraction`` picks benchmarks; ``--out FILE`` also
writes the tables (with the machine description) to FILE, e.g. to update ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from bench.common import Table, machine_table

BENCHMARKS = ("cache_speedup", "read_path", "extraction", "storage", "scaling", "views",
              "object_store", "verification", "alone_pass")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller inputs and fewer repeats (about 5 minutes in all)")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    sections = [machine_table().render()]
    print(sections[0], end="\n\n", flush=True)
    for name in names:
        started = time.perf_counter()
        tables: list[Table] = importlib.import_module(f"bench.{name}").run(args.quick)
        for table in tables:
            sections.append(table.render())
            print(sections[-1], end="\n\n", flush=True)
        print(f"({name}: {time.perf_counter() - started:.0f} s)\n", flush=True)
    if args.out:
        args.out.write_text("\n\n".join(sections) + "\n")


if __name__ == "__main__":
    main()
