"""Regenerate generated/ from protos/: messages, gRPC stubs and .pyi stubs.

Usage: python scripts/generate_protos.py [--check]

With --check, the code is generated into a temporary folder and compared
with generated/; the exit status is 1 when they differ.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GENERATED = ROOT / "generated"


def generate(output: Path) -> None:
    """Run protoc with the Python, gRPC and mypy plugins into `output`."""
    output.mkdir(parents=True, exist_ok=True)
    well_known = resources.files("grpc_tools") / "_proto"
    plugin_dir = Path(sys.executable).parent
    sources = sorted(str(path.relative_to(PROTOS)) for path in PROTOS.rglob("*.proto"))
    arguments = [
        "grpc_tools.protoc",
        f"--proto_path={PROTOS}",
        f"--proto_path={well_known}",
        f"--plugin=protoc-gen-mypy={plugin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={plugin_dir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={output}",
        f"--grpc_python_out={output}",
        f"--mypy_out={output}",
        f"--mypy_grpc_out={output}",
        *sources,
    ]
    if protoc.main(arguments) != 0:
        raise SystemExit("protoc failed; see the messages above")

    for folder in [
        output / "backbeat",
        *(path for path in (output / "backbeat").rglob("*") if path.is_dir()),
    ]:
        (folder / "__init__.py").touch()
    (output / "backbeat" / "py.typed").touch()


def differences(left: Path, right: Path) -> list[str]:
    """List files that are missing on one side or differ, relative to `left`."""
    comparison = filecmp.dircmp(left, right, ignore=["__pycache__"])
    found = [f"only in {left}: {name}" for name in comparison.left_only]
    found += [f"only in {right}: {name}" for name in comparison.right_only]
    found += [f"differs: {left / name}" for name in comparison.diff_files]
    for name in comparison.common_dirs:
        found += differences(left / name, right / name)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when generated/ is out of date")
    options = parser.parse_args()

    if not options.check:
        shutil.rmtree(GENERATED / "backbeat", ignore_errors=True)
        generate(GENERATED)
        print(f"generated code written to {GENERATED}")
        return 0

    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch)
        generate(fresh)
        found = differences(GENERATED / "backbeat", fresh / "backbeat")
    if found:
        print("generated/ is out of date; run python scripts/generate_protos.py", *found, sep="\n")
        return 1
    print("generated/ is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
