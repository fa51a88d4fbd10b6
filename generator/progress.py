"""Progress on a terminal for long builds: stage, count and rate on one rewritten line.

Silent when stderr is not a terminal (CI logs, pipes) or with --quiet, so output stays clean.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Call `update(stage, done, total)` as work advances; `finish()` clears the line."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None, interval: float = 0.2,
                 notices: bool = True):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.notices = notices  # `notice` lines, shown on a terminal or not (not with --quiet)
        self.interval = interval
        self._last = 0.0
        self._stage = ""
        self._stage_start = 0.0
        self._width = 0

    def update(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if stage != self._stage:
            self._stage, self._stage_start = stage, now
        if now - self._last < self.interval and done < total:
            return
        self._last = now
        elapsed = now - self._stage_start
        # The rate once there is a span to measure it over (a stage's first update has none).
        rate = f" ({done / elapsed:,.0f}/s)" if elapsed >= self.interval else ""
        line = f"{stage}: {done:,}/{total:,}{rate}"
        self.stream.write("\r" + line.ljust(self._width))
        self._width = len(line)
        self.stream.flush()

    def notice(self, message: str) -> None:
        """Say something the user should know now (e.g. that the build waits for another)."""
        if self.notices:
            self.finish()
            self.stream.write(message + "\n")
            self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


class NoProgress(Progress):
    def __init__(self) -> None:
        super().__init__(enabled=False, notices=False)
