"""``python -m ehr.demo [--seed N] [--citizens N] [--bundle | --ndjson] [-o FILE]``: write the
demo city as a JSON array (default), a transaction Bundle, or NDJSON."""

from __future__ import annotations

import argparse
import json
import sys

from ehr.demo import city_bundle, generate_city


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ehr.demo", description=__doc__)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--citizens", type=int, default=300)
    fmt = ap.add_mutually_exclusive_group()
    fmt.add_argument("--bundle", action="store_true", help="a transaction Bundle")
    fmt.add_argument("--ndjson", action="store_true", help="one resource per line")
    ap.add_argument("-o", "--output", help="file to write (default: standard output)")
    args = ap.parse_args(argv)
    if args.ndjson:
        text = "".join(
            json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n"
            for r in generate_city(args.seed, args.citizens)
        )
    elif args.bundle:
        text = json.dumps(city_bundle(args.seed, args.citizens), ensure_ascii=False, indent=1)
    else:
        text = json.dumps(generate_city(args.seed, args.citizens), ensure_ascii=False, indent=1)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
