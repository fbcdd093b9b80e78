"""Progress of a long loop that a person can read: a bar on a terminal, and in a log file (stderr
not a terminal: a job's output, a notebook, `> out.log`) a line every EVERY seconds with the step,
the rate and the time left."""

import logging
import sys
import time

from tqdm import tqdm

EVERY = 30.0  # seconds between two progress lines in a log


def duration(seconds):
    """'1 h 02 min', '3 min 05 s', '12 s'."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


class Progress:
    """Iterate `iterable` (of `total` steps) with progress shown as `desc`; `note(text)` adds a
    figure such as the loss to what is shown. Shown only where `enabled` (rank 0 of a job)."""

    def __init__(self, iterable, total, desc, enabled=True, logger=None):
        self.iterable, self.total, self.desc = iterable, total, desc
        self.logger = logger or logging.getLogger("progress")
        self.bar = None
        self.to_log = enabled and not sys.stderr.isatty()
        if enabled and not self.to_log:
            self.bar = tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.5)
        self.text = ""

    def note(self, text):
        self.text = text
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def __iter__(self):
        if self.bar is not None:
            yield from self.bar
            self.bar.close()
            return
        start = last = time.monotonic()
        for step, item in enumerate(self.iterable, start=1):
            yield item
            now = time.monotonic()
            if self.to_log and now - last >= EVERY and step < self.total:
                rate = step / (now - start)
                left = duration((self.total - step) / rate)
                extra = f", {self.text}" if self.text else ""
                self.logger.info(
                    f"{self.desc}: step {step}/{self.total} ({step / self.total:.0%}), {rate:.3g} steps/s, "
                    f"about {left} left{extra}"
                )
                last = now
