"""``python -m scanflow_jupyter.contracts ts``: regenerate labextension/src/contracts.generated.ts."""

from __future__ import annotations

import sys

from scanflow_jupyter.contracts import ts


def main(argv: list[str]) -> int:
    if argv != ["ts"]:
        print("usage: python -m scanflow_jupyter.contracts ts", file=sys.stderr)
        return 2
    print(f"wrote {ts.write()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
