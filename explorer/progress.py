"""Terminal output: progress lines for long work (on standard error, so piped output stays clean)
and frames as text tables."""

from __future__ import annotations

import sys
import time


class Progress:
    """Report ``done/total`` at most every ``interval`` seconds (always the last step).

    Usable as the ``progress=`` callback of long operations: ``progress(done, total, label)``.
    """

    def __init__(self, what: str, *, stream=None, interval: float = 0.5):
        self.what = what
        self.stream = stream or sys.stderr
        self.interval = interval
        self._last = 0.0
        self._start = time.perf_counter()
        self._tty = getattr(self.stream, "isatty", lambda: False)()

    def __call__(self, done: int, total: int, label: str = "") -> None:
        now = time.perf_counter()
        if done < total and now - self._last < self.interval:
            return
        self._last = now
        percent = 100.0 * done / total if total else 100.0
        text = f"{self.what}: {done}/{total} ({percent:3.0f}%) {now - self._start:5.1f}s {label[-60:]}"
        if self._tty:
            self.stream.write("\r\033[K" + text + ("\n" if done >= total else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def table_text(frame) -> str:
    """A DataFrame as a plain text table for the terminal (no index, wide enough to read)."""
    import pandas as pd

    if frame.empty:
        return "(no rows)"
    with pd.option_context("display.max_rows", 200, "display.max_columns", 50, "display.width", 200,
                           "display.max_colwidth", 60):
        return frame.to_string(index=False)
