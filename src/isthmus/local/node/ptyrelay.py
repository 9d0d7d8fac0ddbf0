"""A terminal inside a container for `kubectl exec -t`: run inside the container's namespaces, it opens a
pseudo-terminal from the container's own /dev/pts, starts the command on it as session leader with the
terminal as its controlling tty, and relays bytes between its stdin/stdout (pipes to the node) and the
terminal. Window sizes arrive on the fd named by $ISTHMUS_PTY_CONTROL, one `ROWS COLS` line per resize.

Usage: python -m isthmus.local.node.ptyrelay -- COMMAND [ARGS...]
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import sys
import termios


def main() -> int:
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    control = int(os.environ.pop("ISTHMUS_PTY_CONTROL", "-1"))
    master, slave = os.openpty()
    pid = os.fork()
    if pid == 0:
        os.close(master)
        if control >= 0:
            os.close(control)
        os.login_tty(slave)
        os.execvp(argv[0], argv)
    os.close(slave)
    inputs = [0, master] + ([control] if control >= 0 else [])
    stdin_open = True
    while True:
        readable, _, _ = select.select([fd for fd in inputs if fd != 0 or stdin_open], [], [])
        if master in readable:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the command and everything on the terminal ended
                break
            if not data:
                break
            os.write(1, data)
        if 0 in readable and stdin_open:
            data = os.read(0, 65536)
            if data:
                os.write(master, data)
            else:
                stdin_open = False
                os.write(master, b"\x04")
        if control in readable:
            line = os.read(control, 256)
            if not line:
                inputs.remove(control)
                continue
            for entry in line.decode().splitlines():
                rows, _, cols = entry.partition(" ")
                if rows.isdigit() and cols.isdigit():
                    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", int(rows), int(cols), 0, 0))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
