"""Progress on stderr for long work: downloads (bytes) and per-file loops (items).

On a terminal, a one-line bar redrawn in place. Elsewhere (a log file, a pipe, CI) whole lines only,
never a carriage return: one at each tenth of the work (every 30 s when the total is unknown) and one at
the end, at most one every 5 s, as training prints one line per epoch off a terminal.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

REDRAW_S = 0.2  # on a terminal: at most five redraws a second
LOG_STEPS = 10  # off a terminal: a line at each tenth of the work
LOG_EVERY_S = 30.0  # off a terminal, total unknown: a line every 30 s
LOG_MIN_GAP_S = 5.0  # off a terminal: no two lines closer than this (short work gets only its last line)


class Progress:
    """`label [#####.....] done/total rate`.

    `unit="bytes"` shows megabytes and MB/s, counting only this session's bytes in the rate (a resumed
    download starts at `done`); `unit="items"` shows counts and items per second. `total` may be None
    (unknown size). `stream` defaults to sys.stderr; whether it is a terminal decides the style.
    """

    def __init__(
        self, label: str, total: int | None, unit: str = "items", done: int = 0, stream: TextIO | None = None
    ) -> None:
        self.label, self.total, self.unit, self.done = label, total, unit, done
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty()
        self.start_done, self.start = done, time.monotonic()
        self.last_draw = self.start if not self.live else 0.0
        self.logged_step = self._step()
        self.drawn_done = None

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.live:
            if time.monotonic() - self.last_draw >= REDRAW_S:
                self._draw()
        elif self.total:
            if self._step() > self.logged_step and time.monotonic() - self.last_draw >= LOG_MIN_GAP_S:
                self.logged_step = self._step()
                self._draw()
        elif time.monotonic() - self.last_draw >= LOG_EVERY_S:
            self._draw()

    def finish(self) -> None:
        if self.live or self.drawn_done != self.done:  # off a terminal, the last line may already say it
            self._draw()
        if self.live:
            self.stream.write("\n")
            self.stream.flush()

    def _step(self) -> int:
        """How many tenths of the total are done (0 without a total)."""
        return int(LOG_STEPS * min(self.done / self.total, 1.0)) if self.total else 0

    def _draw(self) -> None:
        self.last_draw, self.drawn_done = time.monotonic(), self.done
        rate = (self.done - self.start_done) / max(self.last_draw - self.start, 1e-6)
        if self.unit == "bytes":
            amount = f"{self.done / 1e6:.1f}" + (f"/{self.total / 1e6:.1f}" if self.total else "") + " MB"
            speed = f"{rate / 1e6:.1f} MB/s"
        else:
            amount = f"{self.done}" + (f"/{self.total}" if self.total else "")
            speed = f"{rate:.0f}/s"
        bar = ""
        if self.total:
            filled = int(30 * min(self.done / self.total, 1.0))
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] "
        line = f"{self.label} {bar}{amount} {speed}"
        self.stream.write(f"\r{line}" if self.live else f"{line}\n")
        self.stream.flush()
