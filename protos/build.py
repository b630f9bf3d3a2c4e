"""Regenerate the Python code for every .proto in this folder (grpcio-tools needed).

Usage: python -m orbitmq.protos.build [--check]
Generated imports are rewritten to `from orbitmq.protos import x_pb2` so the code works as a
subpackage. With --check, regenerate into a temporary folder and exit 1 if anything differs.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def generate(out_dir: Path) -> list[Path]:
    from grpc_tools import protoc  # imported here: only needed to regenerate

    protos = sorted(HERE.glob("*.proto"))
    if not protos:
        return []
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    args = ["protoc", f"-I{HERE}", f"-I{include}", f"--python_out={out_dir}", f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}", *[p.name for p in protos]]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = []
    for f in sorted(out_dir.glob("*_pb2*.py*")):
        text = f.read_text()
        text = re.sub(r"^import (\w+_pb2) as (\w+)$", r"from orbitmq.protos import \1 as \2", text, flags=re.M)
        f.write_text(text)
        written.append(f)
    return written


def main(argv: list[str]) -> int:
    check = "--check" in argv
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp))
        if check:
            stale = [f.name for f in files if not (HERE / f.name).exists() or (HERE / f.name).read_text() != f.read_text()]
            existing = {p.name for p in HERE.glob("*_pb2*.py*")}
            extra = sorted(existing - {f.name for f in files})
            if stale or extra:
                print(f"generated protos are stale: {stale + extra}; run python -m orbitmq.protos.build", file=sys.stderr)
                return 1
            print(f"{len(files)} generated files up to date")
            return 0
        for f in files:
            shutil.copy(f, HERE / f.name)
        print(f"wrote {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
