"""Regenerate the compact definition tables in ``ehr/definitions/data`` from the official FHIR R4
4.0.1 definitions (HL7, CC0) kept beside the project in ``../shared/fhir-r4``.

    python -m ehr.definitions.generate [--source ../shared/fhir-r4]

The server never reads ``../shared`` at run time; it reads only the generated, committed tables.
Each ``gen_*`` module in this package contributes one or more tables through ``generate(src, out)``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path

DATA = Path(__file__).parent / "data"
DEFAULT_SOURCE = Path(__file__).resolve().parents[2].parent / "shared" / "fhir-r4"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    args = ap.parse_args(argv)
    DATA.mkdir(exist_ok=True)
    for mod in sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])):
        if mod.startswith("gen_"):
            importlib.import_module(f"ehr.definitions.{mod}").generate(args.source, DATA)
            print(f"generated tables of {mod}")


if __name__ == "__main__":
    main()
