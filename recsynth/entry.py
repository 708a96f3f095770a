"""The console command: Ctrl-C while the heavy modules are still importing is an interrupt
like any other (one line, exit 130), not a traceback."""

from __future__ import annotations

import sys


def run() -> None:
    try:
        from recsynth.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("recsynth: interrupted\n")
        raise SystemExit(130) from None
    raise SystemExit(main())
