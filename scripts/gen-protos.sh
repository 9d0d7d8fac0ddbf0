#!/usr/bin/env bash
# Regenerates the Python protobuf code of the API server's protobuf decoder:
#   src/isthmus/local/apiserver/protobuf/proto/**/*.proto  ->  .../protobuf/generated/**/*_pb2.py(i)
#
# The .proto files keep Kubernetes' import paths (k8s.io/api/core/v1/generated.proto, ...), which protoc
# turns into top-level Python imports (`from k8s.io.apimachinery... import generated_pb2`). This script
# rewrites those to absolute imports inside isthmus, and adds the __init__.py files that make the
# generated tree a package. The .pyi stubs come from mypy-protobuf (protoc-gen-mypy).
#
# Usage: scripts/gen-protos.sh            (uses .venv/bin/python; override with PYTHON=...)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pkg_dir="$root/src/isthmus/local/apiserver/protobuf"
proto_dir="$pkg_dir/proto"
out_dir="$pkg_dir/generated"
python="${PYTHON:-$root/.venv/bin/python}"
bin_dir="$(dirname "$python")"

if [ ! -x "$bin_dir/protoc-gen-mypy" ]; then
    echo "gen-protos: $bin_dir/protoc-gen-mypy not found; install the dev extras (grpcio-tools, mypy-protobuf)" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Paths relative to proto_dir, as the .proto files import each other.
protos="$(cd "$proto_dir" && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)"
# shellcheck disable=SC2086  # the paths have no spaces; word splitting is wanted
(cd "$proto_dir" && "$python" -m grpc_tools.protoc \
    --proto_path=. \
    --plugin=protoc-gen-mypy="$bin_dir/protoc-gen-mypy" \
    --python_out="$tmp" \
    --mypy_out=quiet:"$tmp" \
    $protos)

"$python" - "$tmp" <<'EOF'
"""Points the generated imports at isthmus' package and makes every directory a package."""

import re
import sys
from pathlib import Path

PACKAGE = "isthmus.local.apiserver.protobuf.generated"
out = Path(sys.argv[1])
for path in sorted(out.rglob("*_pb2.py*")):
    text = path.read_text()
    # `from k8s.io.api... import generated_pb2 as x` (both .py and .pyi)
    text = re.sub(r"^from k8s\.io\.", f"from {PACKAGE}.k8s.io.", text, flags=re.MULTILINE)
    # The module name the classes report (`__module__`) in BuildTopDescriptorsAndMessages.
    text = re.sub(r"'(k8s\.io\.[\w.]+_pb2)'", rf"'{PACKAGE}.\1'", text)
    path.write_text(text)
for directory in sorted({out, *(p for p in out.rglob("*") if p.is_dir())}):
    init = directory / "__init__.py"
    if directory == out:
        init.write_text(
            '"""Generated protobuf code for a subset of Kubernetes\' API types. Do not edit: the sources are\n'
            '../proto/**/*.proto, and scripts/gen-protos.sh regenerates this package."""\n'
        )
    else:
        init.touch()
EOF

rm -rf "$out_dir"
mkdir -p "$out_dir"
cp -R "$tmp"/. "$out_dir"/
echo "gen-protos: wrote $(find "$out_dir" -name '*_pb2.py' | wc -l | tr -d ' ') modules to ${out_dir#"$root"/}"
