"""Generate the ABCI protobuf modules from CometBFT's own .proto files.

Run at setup (`make setup`); nothing generated is committed. The .proto
files come from the pinned CometBFT Go module and the gogoproto module it
requires, fetched with `go mod download` from the Go module proxy.

    python -m medchain.consensus.abci.protogen --cometbft v0.38.26 --out DIR
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

PROTO_DIRS = ("tendermint/abci", "tendermint/crypto", "tendermint/types", "tendermint/version")


def module_dir(module: str, version: str) -> Path:
    """Unpacked source of a Go module (downloads it into the module cache)."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return Path(json.loads(out)["Dir"])


def generate(cometbft_version: str, out: Path) -> list[Path]:
    """Write *_pb2.py and .pyi for the ABCI protos into `out`; return the files."""
    import grpc_tools
    from grpc_tools import protoc

    comet = module_dir("github.com/cometbft/cometbft", cometbft_version)
    match = re.search(r"github.com/cosmos/gogoproto (v\S+)", (comet / "go.mod").read_text())
    if match is None:
        raise RuntimeError("cannot find the gogoproto version in CometBFT's go.mod")
    gogo = module_dir("github.com/cosmos/gogoproto", match.group(1))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    protos = [
        str(p.relative_to(comet / "proto"))
        for d in PROTO_DIRS
        for p in sorted((comet / "proto" / d).glob("*.proto"))
    ]
    protos.append("gogoproto/gogo.proto")
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{comet / 'proto'}",
        f"-I{gogo}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on CometBFT's ABCI protos")
    for d in (*PROTO_DIRS, "tendermint", "gogoproto"):
        (out / d / "__init__.py").touch()
    (out / "tendermint" / "py.typed").touch()
    return sorted(out.rglob("*_pb2.py"))


def main() -> None:
    """Command line: generate the ABCI protobuf modules for one CometBFT version."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cometbft", required=True, help="CometBFT module version, e.g. v0.38.26")
    parser.add_argument("--out", type=Path, required=True, help="a directory on sys.path")
    ns = parser.parse_args()
    files = generate(ns.cometbft, ns.out)
    print(f"generated {len(files)} ABCI protobuf modules into {ns.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
