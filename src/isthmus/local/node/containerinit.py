"""A container's first process: set up its filesystem, identity and privileges, then exec tini with the program.

The node starts it as `nsenter --net=POD_NETNS unshare --mount --uts --ipc --pid --fork --kill-child ...
python -m isthmus.local.node.containerinit SPEC.json`, so it runs as PID 1 of a new PID namespace (nothing the
container starts can outlive it) with its own mount, UTS and IPC namespaces, in the pod's network namespace.

Filesystem: an overlay whose lower layer is the host's root (the image is "this machine") and whose upper
layer is private to this container run, so the container may write anywhere (its /tmp too) and create mount
points without touching the host. On top: a minimal /dev, a fresh /proc, read-only /sys, the host's other
filesystems that hold the installed programs (read-only), the pod's /etc/hosts
and /etc/resolv.conf, the volumes at their mount paths, and empty tmpfs over the local clusters' state folders
(admin tokens and keys stay invisible). Directories on the way to the installed programs are made traversable
in the overlay (a checkout under a mode-0700 home stays runnable for uid 1337).

Privileges: the capability bounding set is cut to the container's (Docker's default set, plus `add`, minus
`drop`, everything when privileged), then groups, gid and uid are set, then `tini` is exec'ed as PID 1: it
forwards signals to the program and reaps orphans.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import orjson

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}

CAPABILITIES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
]
DEFAULT_CAPABILITIES = frozenset(
    {
        "CHOWN",
        "DAC_OVERRIDE",
        "FSETID",
        "FOWNER",
        "MKNOD",
        "NET_RAW",
        "SETGID",
        "SETUID",
        "SETFCAP",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "SYS_CHROOT",
        "KILL",
        "AUDIT_WRITE",
    }
)
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


def bind(source: str, target: str, readonly: bool = False, recursive: bool = False) -> None:
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    if readonly:
        mount(source, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | (MS_REC if recursive else 0))


def _inside(root: str, path: str) -> str:
    """`path` as seen from `root`: symlinks on the way are followed inside `root` (as after a chroot), never
    out to the host (`/var/run -> /run` must lead to root/run, not to the host's /run)."""
    resolved = root
    parts = [p for p in path.split("/") if p and p != "."]
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            resolved = os.path.dirname(resolved) if resolved != root else root
            continue
        candidate = os.path.join(resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise OSError(f"too many symbolic links in {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = root
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved = candidate
    return resolved


def _ensure_point(path: str, is_file: bool) -> None:
    if os.path.lexists(path):
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if is_file:
        Path(path).touch()
    else:
        Path(path).mkdir(parents=True, exist_ok=True)


def build_root(spec: dict[str, Any]) -> str:
    root = spec["root"]
    merged = root["merged"]
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    mount("overlay", merged, "overlay", 0, f"lowerdir=/,upperdir={root['upper']},workdir={root['work']}")
    dev = _inside(merged, "/dev")
    mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755,size=65536k")
    for name in DEVICES:
        target = os.path.join(dev, name)
        Path(target).touch()
        bind(f"/dev/{name}", target)
    for link, to in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ):
        os.symlink(to, os.path.join(dev, link))
    for sub in ("pts", "shm", "mqueue"):
        os.mkdir(os.path.join(dev, sub))
    mount(
        "devpts",
        os.path.join(dev, "pts"),
        "devpts",
        MS_NOSUID | MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    )
    mount("shm", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
    mount("proc", _inside(merged, "/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    bind("/sys", _inside(merged, "/sys"), readonly=True, recursive=True)
    for entry in spec.get("mounts", []):
        target = _inside(merged, entry["target"])
        _ensure_point(target, os.path.isfile(entry["source"]))
        bind(entry["source"], target, readonly=bool(entry.get("readonly")))
    for hidden in spec.get("hide", []):
        target = _inside(merged, hidden)
        if os.path.isdir(target):
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "mode=755,size=4k")
    for directory in spec.get("traverse", []):
        target = _inside(merged, directory)
        if os.path.isdir(target):
            mode = stat.S_IMODE(os.stat(target).st_mode)
            os.chmod(target, mode | 0o011)
    return str(merged)


def pivot_root(new_root: str) -> None:
    old = os.path.join(new_root, ".oldroot")
    os.makedirs(old, exist_ok=True)
    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(f"pivot_root: unsupported machine {platform.machine()}")
    _check(_libc.syscall(number, new_root.encode(), old.encode()), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.oldroot", MNT_DETACH), "umount old root")
    os.rmdir("/.oldroot")


def drop_capabilities(keep: set[str]) -> None:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for number in range(last + 1):
        name = CAPABILITIES[number] if number < len(CAPABILITIES) else f"CAP_{number}"
        if name not in keep:
            _check(_libc.prctl(PR_CAPBSET_DROP, number, 0, 0, 0), f"drop capability {name}")


def main() -> None:
    spec: dict[str, Any] = orjson.loads(Path(sys.argv[1]).read_bytes())
    socket.sethostname(spec["hostname"])
    new_root = build_root(spec)
    if spec.get("read_only_root"):
        mount(new_root, new_root, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    pivot_root(new_root)
    workdir = spec.get("workdir") or "/"
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    drop_capabilities(set(spec["capabilities"]))
    uid, gid = int(spec.get("uid", 0)), int(spec.get("gid", 0))
    os.setgroups([int(g) for g in spec.get("groups", [])])
    os.setgid(gid)
    os.setuid(uid)
    if spec.get("no_new_privs"):
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    env = {str(k): str(v) for k, v in spec.get("env", {}).items()}
    os.execve(spec["tini"], [spec["tini"], "-g", "--", *spec["argv"]], env)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # what the pod shows as the container's start failure
        print(f"isthmus: the container could not start: {exc}", file=sys.stderr, flush=True)
        sys.exit(128)
