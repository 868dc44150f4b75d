"""Generate the Python code for the wire API from proto/hodei/v1/*.proto.

Usage: python scripts/gen_protos.py [OUT_DIR]   (default: src)

The output lands in OUT_DIR/hodei/v1/. The generated code is committed; a test regenerates it into
a temporary folder and checks that nothing changed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def generate(out_dir: Path) -> list[Path]:
    """Run protoc with the Python, gRPC and mypy plugins; return the files written."""
    target = out_dir / "hodei" / "v1"
    target.mkdir(parents=True, exist_ok=True)
    protos = sorted(
        str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "hodei" / "v1").glob("*.proto")
    )
    well_known = Path(protoc.__file__).parent / "_proto"
    plugin = shutil.which("protoc-gen-mypy", path=str(Path(sys.executable).parent))
    plugin_grpc = shutil.which("protoc-gen-mypy_grpc", path=str(Path(sys.executable).parent))
    if plugin is None or plugin_grpc is None:
        raise SystemExit(
            "mypy-protobuf is not installed next to this Python: pip install -e '.[dev]'"
        )
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={plugin}",
        f"--plugin=protoc-gen-mypy_grpc={plugin_grpc}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in target.iterdir() if p.name != "__init__.py")


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "src"
    for path in generate(out):
        print(path)
