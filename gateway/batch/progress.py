"""Progress while a batch runs (a bar on a terminal, a log line every N images otherwise) and the summary."""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger("gateway.batch")
Outcome = Literal["done", "skipped", "failed"]


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    listed: int = 0
    started: float = field(default_factory=time.monotonic)
    interrupted: bool = False

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def images_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    def text(self) -> str:
        reasons = ", ".join(f"{code}: {n}" for code, n in self.failed.most_common())
        failed = f"{self.failed_total} failed" + (f" ({reasons})" if reasons else "")
        state = "interrupted" if self.interrupted else "finished"
        return (
            f"batch {state}: {self.done} captioned, {self.skipped} skipped (already in DEST), {failed}; "
            f"{self.elapsed_s:.1f} s, {self.images_per_s:.2f} images/s"
        )


class Progress:
    def __init__(self, summary: Summary, *, bar: bool | None = None, log_every: int = 100) -> None:
        self._summary = summary
        self._log_every = max(log_every, 1)
        self._bar: Any = None
        if bar if bar is not None else sys.stderr.isatty():
            self._bar = _tqdm_bar()

    def listed(self, count: int) -> None:
        self._summary.listed = count
        if self._bar is not None:
            self._bar.total = count  # grows while the listing streams; the ETA firms up as it ends
            self._bar.refresh()

    def advance(self, outcome: Outcome, reason: str | None = None) -> None:
        summary = self._summary
        if outcome == "done":
            summary.done += 1
        elif outcome == "skipped":
            summary.skipped += 1
        else:
            summary.failed[reason or "unknown"] += 1
        if self._bar is not None:
            self._bar.set_postfix(failed=summary.failed_total, refresh=False)
            self._bar.update(1)
            return
        handled = summary.done + summary.skipped + summary.failed_total
        if handled % self._log_every == 0:
            log.info(
                "batch: %d/%d handled (%d captioned, %d skipped, %d failed), %.2f images/s",
                handled,
                summary.listed,
                summary.done,
                summary.skipped,
                summary.failed_total,
                summary.images_per_s,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _tqdm_bar() -> Any:
    try:
        from tqdm import tqdm  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:  # the bar is a nicety; without the `batch` extra we log lines instead
        log.warning("tqdm is not installed (pip install 'florence-tagger[batch]'): logging progress instead")
        return None
    return tqdm(total=0, unit="img", dynamic_ncols=True, smoothing=0.1)
