"""The checked-in generated protobuf modules match what ``scripts/gen_protos.py`` produces."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_generator() -> ModuleType:
    """Import ``scripts/gen_protos.py`` by path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "gen_protos", REPO_ROOT / "scripts" / "gen_protos.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_pb2_files_match_the_generator() -> None:
    fresh: dict[str, bytes] = load_generator().generated_files()
    assert len(fresh) == 2 * len(list((REPO_ROOT / "provisioning/protocomm/proto").glob("*.proto")))
    drifted = [rel for rel, content in fresh.items() if (REPO_ROOT / rel).read_bytes() != content]
    assert drifted == []
