"""Write docs/API.md from the declared endpoints: scripts/gen_api_docs.py [--check]."""

from __future__ import annotations

import argparse
import sys

from provisioning.api.reference import API_DOC, render


def main() -> int:
    """Write the page, or with --check fail when it is stale."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        if API_DOC.read_text() != text:
            print("docs/API.md is stale: run scripts/gen_api_docs.py", file=sys.stderr)
            return 1
        return 0
    API_DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
