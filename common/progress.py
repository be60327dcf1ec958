"""A one-line progress bar on stderr for long work: downloads (bytes) and per-file loops (items)."""
import sys
import time

REDRAW_S = 0.2  # at most five redraws a second


class Progress:
    """`label [#####.....] done/total rate`, redrawn in place.

    `unit="bytes"` shows megabytes and MB/s, counting only this session's bytes in the rate (a resumed
    download starts at `done`); `unit="items"` shows counts and items per second. `total` may be None
    (unknown size).
    """

    def __init__(self, label, total, unit="items", done=0):
        self.label, self.total, self.unit, self.done = label, total, unit, done
        self.start_done, self.start = done, time.monotonic()
        self.last_draw = 0.0

    def advance(self, n=1):
        self.done += n
        if time.monotonic() - self.last_draw >= REDRAW_S:
            self._draw()

    def finish(self):
        self._draw()
        sys.stderr.write("\n")

    def _draw(self):
        self.last_draw = time.monotonic()
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
        sys.stderr.write(f"\r{self.label} {bar}{amount} {speed}")
        sys.stderr.flush()
