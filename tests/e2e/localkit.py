"""Helpers for end-to-end tests: a local run driven through the `isthmus` command, and kubectl."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


def isthmus_command() -> str:
    return str(Path(sys.executable).with_name("isthmus"))


class LocalClusters:
    """`isthmus local ...` for one state folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.kubeconfig = folder / "kubeconfig"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [isthmus_command(), "local", *args, "--dir", str(self.folder)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"isthmus local {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def up(self, clusters: int = 2) -> None:
        self.cli("up", "--clusters", str(clusters))

    def down(self, purge: bool = False) -> None:
        self.cli("down", *(["--purge"] if purge else []))

    def kubeconfig_data(self) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(self.kubeconfig.read_text())
        return data

    def server(self, context: str) -> str:
        for cluster in self.kubeconfig_data()["clusters"]:
            if cluster["name"] == context:
                return str(cluster["cluster"]["server"])
        raise KeyError(context)


@dataclass
class KubectlResult:
    code: int
    out: str
    err: str


class Kubectl:
    """The real kubectl against a local run, with its own discovery cache folder."""

    def __init__(self, kubeconfig: Path, cache_dir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.cache_dir = cache_dir

    def argv(self, *args: str, context: str = "cluster1", binary: str = "kubectl") -> list[str]:
        """The command line, for commands run in the background or on a terminal."""
        return [
            binary,
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.cache_dir),
            "--context",
            context,
            *args,
        ]

    def run(
        self,
        *args: str,
        context: str = "cluster1",
        stdin: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> KubectlResult:
        cmd = self.argv(*args, context=context)
        result = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return KubectlResult(result.returncode, result.stdout, result.stderr)

    def __call__(self, *args: str, context: str = "cluster1", stdin: str | None = None) -> str:
        return self.run(*args, context=context, stdin=stdin).out

    def fails(self, *args: str, context: str = "cluster1", stdin: str | None = None) -> str:
        """Run a command that must fail; return what it printed on stderr."""
        result = self.run(*args, context=context, stdin=stdin, check=False)
        assert result.code != 0, f"kubectl {' '.join(args)} should have failed but printed:\n{result.out}"
        return result.err


def wait_for(what: str, check: Callable[[], bool], seconds: float = 60) -> None:
    """Poll `check` every 0.3 s until it is true; fail after `seconds` naming `what`."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.3)
