#!/usr/bin/env python3
"""Regenerate federation/v1 from proto/federation/v1 with the pinned grpcio-tools (see pyproject [dev]).

Generated code is checked in; CI runs this script and fails on any diff.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT


def main() -> int:
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "federation" / "v1").glob("*.proto"))
    for stale in (ROOT / "federation" / "v1").glob("*_pb2*.py*"):
        stale.unlink()
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={OUT_DIR}",
        f"--grpc_python_out={OUT_DIR}",
        f"--mypy_out={OUT_DIR}",
        f"--mypy_grpc_out={OUT_DIR}",
        *protos,
    ]
    # protoc-gen-mypy (mypy-protobuf) lives beside this interpreter in the venv.
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    code = protoc.main(args)
    if code != 0:
        print(f"protoc failed with exit code {code}", file=sys.stderr)
        return int(code)
    # The generator writes absolute-looking imports ("from federation.v1 import ..."), which resolve because
    # the generated package lives at federation/v1 inside the installed `federation` package.
    for path in (ROOT / "federation" / "v1").glob("*.py"):
        text = path.read_text()
        path.write_text(re.sub(r"[ \t]+$", "", text, flags=re.M))
    (ROOT / "federation" / "v1" / "__init__.py").write_text('"""Generated wire code (do not edit)."""\n')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
