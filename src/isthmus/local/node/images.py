"""The image catalog: what a container of a given image runs on this machine.

There is no image registry: each known image maps to a program installed here that behaves like the original
on the same ports and paths. Users run their own programs with the generic image `isthmus.dev/host`, whose
containers run their `command`/`args` from the host's filesystem. Any other image is an ErrImagePull.

| image (any hub, any tag)                                  | runs                                              |
|-----------------------------------------------------------|---------------------------------------------------|
| `.../isthmus`                                             | the installed `isthmus` command with the args     |
| `isthmus.dev/host`                                        | the container's command and args                  |
| `istio/examples-helloworld-v1`, `-v2` (docker.io, registry.istio.io/release) | helloworld on 5000: `/hello` |
| `curlimages/curl`                                         | command/args (entrypoint `curl`); curl for exec   |
| `kennethreitz/httpbin`                                    | httpbin (the `httpbin` package) on port 80        |
| `mccutchen/go-httpbin`                                    | httpbin on 8080, or the port of `-port`           |
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

GENERIC_IMAGE = "isthmus.dev/host"


class ImageNotFoundError(Exception):
    """The image is not in the catalog; the message is the pod's ErrImagePull message."""


@dataclass(frozen=True)
class Program:
    """What a container runs: argv, and environment variables the image itself would set."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def repository(image: str) -> str:
    """`docker.io/istio/examples-helloworld-v1:1.0` -> `istio/examples-helloworld-v1`; `isthmus` stays."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name.rsplit(":", 1)[0]
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]  # a registry host
    if parts and parts[0] == "library":
        parts = parts[1:]
    return "/".join(parts)


def _python() -> str:
    return sys.executable


def _isthmus() -> str:
    return str(Path(sys.executable).with_name("isthmus"))


def _flag(args: Sequence[str], name: str, default: str) -> str:
    for i, arg in enumerate(args):
        if arg in (f"-{name}", f"--{name}") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith((f"-{name}=", f"--{name}=")):
            return arg.split("=", 1)[1]
    return default


def _command(command: Sequence[str], args: Sequence[str], image: str) -> list[str]:
    argv = [*command, *args]
    if not argv:
        raise ImageNotFoundError(f'image "{image}" has no entrypoint here: set the container\'s command')
    if "/" not in argv[0]:
        found = shutil.which(argv[0])
        if found is None:
            raise ImageNotFoundError(
                f'image "{image}": the command "{argv[0]}" is not installed on this machine'
            )
        argv[0] = found
    return argv


def resolve(image: str, command: Sequence[str], args: Sequence[str], env: Mapping[str, str]) -> Program:
    """The program a container of `image` runs; raises ImageNotFoundError for images outside the catalog."""
    repo = repository(image)
    base = repo.rsplit("/", 1)[-1]
    if base == "isthmus":
        return Program([_isthmus(), *command[1:], *args] if command else [_isthmus(), *args])
    if image.split(":", 1)[0].split("@", 1)[0] == GENERIC_IMAGE:
        return Program(_command(command, args, image))
    if repo in (
        "istio/examples-helloworld-v1",
        "istio/examples-helloworld-v2",
        "release/examples-helloworld-v1",
        "release/examples-helloworld-v2",
    ):
        version = repo.rsplit("-", 1)[-1]
        return Program(
            [
                _python(),
                "-m",
                "isthmus.local.node.samples.helloworld",
                "--version",
                version,
                "--port",
                "5000",
            ],
            {"SERVICE_VERSION": version},
        )
    if repo == "curlimages/curl":
        return Program(_command(command or ["curl"], args, image))
    if repo == "kennethreitz/httpbin":
        if command:
            return Program(_command(command, args, image))
        return Program([_python(), "-m", "isthmus.local.node.samples.httpbin", "--port", "80"])
    if repo == "mccutchen/go-httpbin":
        port = _flag(args, "port", env.get("PORT", "8080"))
        return Program([_python(), "-m", "isthmus.local.node.samples.httpbin", "--port", port])
    raise ImageNotFoundError(
        f'Failed to pull image "{image}": the local cluster has no such image. It runs: .../isthmus (Isthmus), '
        f"{GENERIC_IMAGE} (your command from this machine's filesystem), istio/examples-helloworld-v1|v2, "
        "curlimages/curl, kennethreitz/httpbin, mccutchen/go-httpbin"
    )
