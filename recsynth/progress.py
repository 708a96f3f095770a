"""Stage reports for long work: a live spinner on a terminal, plain timed lines otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.status import Status


class StageReporter:
    """Callable handed to library code as `on_stage`; the library itself never prints."""

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic,
                 quiet: bool = False) -> None:
        self.console = console
        self.clock = clock
        self.quiet = quiet
        self.start = clock()
        self._status: Status | None = None

    def __call__(self, stage: str) -> None:
        if self.quiet:
            return
        elapsed = self.clock() - self.start
        if self.console.is_terminal:
            if self._status is None:
                self._status = self.console.status(stage)
                self._status.start()
            else:
                self._status.update(stage)
            self.console.log(f"[dim]{elapsed:7.1f}s[/] {stage}")
        else:
            self.console.print(f"recsynth: [{elapsed:7.1f}s] {stage}", highlight=False,
                               markup=False, soft_wrap=True)

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def __enter__(self) -> StageReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
