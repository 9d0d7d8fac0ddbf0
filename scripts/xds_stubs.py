"""Type stubs for the Envoy API (`xds-protos` ships generated code without them), made by mypy-protobuf from
the descriptors compiled into the installed modules, so `mypy --strict` checks every proto field we touch.

Usage: `python scripts/xds_stubs.py OUTDIR` (run by `make install`; OUTDIR is `.stubs`, which mypy reads).
"""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from google.protobuf.descriptor import FileDescriptor
from mypy_protobuf import main as mypy_protobuf

PACKAGES = ("envoy", "xds", "udpa", "validate", "google.rpc")


def modules() -> list[str]:
    names: list[str] = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            if info.name.endswith("_pb2") and not info.name.startswith("envoy._bin"):
                importlib.import_module(info.name)
                names.append(info.name)
    return names


def request(names: list[str]) -> plugin_pb2.CodeGeneratorRequest:
    out = plugin_pb2.CodeGeneratorRequest()
    seen: set[str] = set()

    def add(descriptor: FileDescriptor) -> None:
        if descriptor.name in seen:
            return
        for dependency in descriptor.dependencies:
            add(dependency)
        seen.add(descriptor.name)
        proto = descriptor_pb2.FileDescriptorProto()
        descriptor.CopyToProto(proto)
        out.proto_file.append(proto)

    for name in names:
        descriptor = importlib.import_module(name).DESCRIPTOR
        add(descriptor)
        out.file_to_generate.append(descriptor.name)
    return out


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".stubs")
    generated = request(modules())
    descriptors = mypy_protobuf.Descriptors(generated)
    response = plugin_pb2.CodeGeneratorResponse()
    mypy_protobuf.generate_mypy_stubs(descriptors, response, True, False, False, False, False)
    mypy_protobuf.generate_mypy_grpc_stubs(
        descriptors, response, True, False, False, False, False, mypy_protobuf.GRPCType.ASYNC
    )
    if target.exists():
        shutil.rmtree(target)
    for file in response.file:
        path = target / file.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(file.content)
    for directory in (p for p in target.rglob("*") if p.is_dir()):
        if directory != target / "google":  # a namespace shared with types-protobuf's google.protobuf
            (directory / "__init__.pyi").touch()
    print(f"{len(response.file)} stub files in {target}")


if __name__ == "__main__":
    main()
