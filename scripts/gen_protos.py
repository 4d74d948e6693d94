"""Regenerate the protocomm ``*_pb2.py`` and ``*_pb2.pyi`` files from their ``.proto`` sources.

Run ``python scripts/gen_protos.py`` after editing a ``.proto`` file; a test fails
when the checked-in generated files differ from what this script produces.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = Path("provisioning/protocomm/proto")


def proto_sources(root: Path = REPO_ROOT) -> list[Path]:
    """Return the ``.proto`` files, relative to the repository root, in a stable order."""
    return sorted(p.relative_to(root) for p in (root / PROTO_DIR).glob("*.proto"))


def generate(out_dir: Path, root: Path = REPO_ROOT) -> list[Path]:
    """Compile every ``.proto`` into ``out_dir`` (mirroring the repo) and list the outputs."""
    sources = proto_sources(root)
    # The include path is the repo root so that generated modules import each
    # other as ``provisioning.protocomm.proto.x_pb2`` (a package-relative import).
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *(str(s) for s in sources),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    return sorted(p.relative_to(out_dir) for p in (out_dir / PROTO_DIR).glob("*_pb2.py*"))


def generated_files(root: Path = REPO_ROOT) -> dict[str, bytes]:
    """Return the freshly generated files as ``{relative path: content}``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        return {str(rel): (out / rel).read_bytes() for rel in generate(out, root)}


def main(argv: list[str] | None = None) -> int:
    """Write the generated files into the tree, or with ``--check`` report drift."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report drift, write nothing")
    args = parser.parse_args(argv)
    fresh = generated_files()
    drifted = [
        rel
        for rel, content in fresh.items()
        if not (REPO_ROOT / rel).exists() or (REPO_ROOT / rel).read_bytes() != content
    ]
    if args.check:
        for rel in drifted:
            print(f"out of date: {rel}")
        return 1 if drifted else 0
    for rel in drifted:
        (REPO_ROOT / rel).write_bytes(fresh[rel])
        print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
