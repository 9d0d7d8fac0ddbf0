"""httpbin (the real `httpbin` package) served by gunicorn on a given port, as the public httpbin images are."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=80)
    options = parser.parse_args()
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    os.execv(
        gunicorn,
        [
            gunicorn,
            "--bind",
            f"0.0.0.0:{options.port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--worker-class",
            "gthread",
            "--access-logfile",
            "-",
            "httpbin:app",
        ],
    )


if __name__ == "__main__":
    main()
