"""What a suite run shows while it runs: the stage, the case (k of N), the round (r of R), the time
spent and an estimate of the time left.

Three forms, chosen once per run:
- live, on a terminal: one line redrawn four times a second (rich), erased when the case ends and
  replaced by the case's one-line outcome;
- plain, without a terminal (a CI log): a line when a stage starts and the case's outcome line;
- quiet (-q): nothing.

The estimate of the time left is the current case's (its remaining rounds at the pace of the ones
done) plus each later case's duration the last time it ran on this machine (kept in the cache);
a case never run here makes it a lower bound, shown with a "+".
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

from chipbench.stash import Stash

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
DURATIONS = Stash("durations", 30 * 86400)  # each case's last wall time on a machine, for the estimate


def clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else (f"{seconds // 60}:{seconds % 60:02d}")
    )


class Progress:
    """The run's progress display. `stream`: where it goes (a terminal's, or a log's); `live`:
    redraw one line (a terminal); `quiet`: show nothing. `machine`: the facts keying the kept case
    durations (None: no estimate from earlier runs)."""

    def __init__(self, stream=None, *, live: bool = False, quiet: bool = False, machine: dict | None = None):
        self.stream = stream
        self.live = live and not quiet and stream is not None
        self.quiet = quiet or stream is None
        self.machine = machine
        self.cases: list[str] = []
        self.index = 0  # the current case, 1-based; 0 before the first
        self.stage_text = ""
        self.round = (0, 0, "")  # (done, count, phase)
        self.round_started: float | None = None
        self.round_times: list[float] = []
        self.started = time.perf_counter()
        self.case_started = self.started
        self._known: dict[str, float | None] = {}
        self._live = None
        self._lock = threading.Lock()

    # -- what the session tells it -------------------------------------------------------------

    def plan(self, case_ids: list[str]) -> None:
        self.cases = list(case_ids)
        self._known = {c: self._kept(c) for c in self.cases}

    def _plan_line(self) -> None:
        known = [v for v in self._known.values() if v is not None]
        guess = (
            f"; about {clock(sum(known))}"
            + ("" if len(known) == len(self.cases) else "+")
            + " by this machine's last runs"
            if known
            else ""
        )
        self._line(f"{len(self.cases)} case(s) to run{guess}")

    def start_case(self, case_id: str) -> None:
        if not self.index and not self.quiet and self.cases:
            self._plan_line()
        self.index = self.cases.index(case_id) + 1 if case_id in self.cases else self.index + 1
        self.case_started = time.perf_counter()
        self.round, self.round_times, self.round_started = (0, 0, ""), [], None
        self._start_live()

    @contextmanager
    def stage(self, text: str):
        """A named stage of the current case (or of the run): shown while it lasts."""
        before = self.stage_text
        self.stage_text = text or before
        if text and not self.live and not self.quiet:
            self._line(f"{self._prefix()}{text} ...")
        try:
            yield
        finally:
            self.stage_text = before

    def phase(self, name: str, count: int) -> None:
        """The rounds of a phase begin: `name` warmup, timed or trial, `count` of them."""
        with self._lock:
            self.round = (0, count, name)
            self.round_started = None
        if not self.live and not self.quiet and count:
            self._line(f"{self._prefix()}{count} {name} round{'s' if count != 1 else ''} ...")

    def tick(self) -> None:
        """A round of the current phase starts (the previous one, if any, has ended)."""
        now = time.perf_counter()
        with self._lock:
            done, count, name = self.round
            if self.round_started is not None:
                self.round_times.append(now - self.round_started)
                done += 1
            self.round = (min(done, count), count, name)
            self.round_started = now

    def end_case(self, case_id: str, outcome: str) -> None:
        took = time.perf_counter() - self.case_started
        self._stop_live()
        if self.machine is not None:
            DURATIONS.put({**self.machine, "case": case_id}, took)
        self._known[case_id] = took
        if not self.quiet:
            self._line(f"{self._prefix()}{outcome} ({clock(took)})")

    def note(self, text: str) -> None:
        """A line of its own, between cases."""
        if not self.quiet:
            self._line(text)

    def close(self) -> None:
        self._stop_live()

    # -- the estimate --------------------------------------------------------------------------

    def _kept(self, case_id: str) -> float | None:
        if self.machine is None:
            return None
        kept = DURATIONS.get({**self.machine, "case": case_id})
        return float(kept[0]) if kept and isinstance(kept[0], (int, float)) else None

    def left(self) -> tuple[float, bool]:
        """(seconds left, whether that is the whole estimate rather than a lower bound)."""
        now = time.perf_counter()
        with self._lock:
            done, count, _ = self.round
            times = list(self.round_times)
            started = self.round_started
        current = self.cases[self.index - 1] if 0 < self.index <= len(self.cases) else None
        whole = True
        if count and times:  # the rounds left at the pace of those done
            pace = sum(times) / len(times)
            this = max(0.0, (count - done) * pace - (now - started if started else 0.0))
        else:
            kept = self._known.get(current) if current else None
            this = max(0.0, kept - (now - self.case_started)) if kept else 0.0
            whole = kept is not None
        later = [self._known.get(c) for c in self.cases[self.index :]]
        whole = whole and all(v is not None for v in later)
        return this + sum(v for v in later if v is not None), whole

    # -- drawing -------------------------------------------------------------------------------

    def _prefix(self) -> str:
        if not self.cases or not self.index:
            return ""
        return f"[{self.index}/{len(self.cases)}] {self.cases[self.index - 1]}: "

    def status(self) -> str:
        """The live line's text."""
        done, count, name = self.round
        parts = [(self._prefix() + self.stage_text) if self.stage_text else self._prefix().rstrip(": ")]
        if count and not self.stage_text:
            parts.append(f"{name} round {min(done + 1, count)} of {count}")
        parts.append(f"{clock(time.perf_counter() - self.started)} elapsed")
        left, whole = self.left()
        if left > 0 or whole:
            parts.append(f"about {clock(left)}{'' if whole else '+'} left")
        return " · ".join(parts)

    def _line(self, text: str) -> None:
        live = self._live  # printed above the live line (never under self._lock: the redraw takes it)
        if live is not None:
            live.console.print(text, highlight=False, markup=False, soft_wrap=True)
            return
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream costs the display, never the run
            self.quiet = True

    def _start_live(self) -> None:
        if not self.live or self._live is not None:
            return
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        try:  # the stream is a copy of the terminal's descriptor: rich cannot ask it its width
            width = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            width = 80
        console = Console(file=self.stream, force_terminal=True, highlight=False, width=width)
        progress = self

        class _Line:  # one line, cut to the terminal's width: a wrapped live line would not be erased whole
            def __rich_console__(self, console, options):
                frame = SPINNER[int(time.monotonic() * 8) % len(SPINNER)]
                yield Text(f"{frame} {progress.status()}", no_wrap=True, overflow="ellipsis")

        self._live = Live(
            _Line(), console=console, refresh_per_second=4, transient=True, redirect_stdout=False, redirect_stderr=False
        )
        self._live.start()

    def _stop_live(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            try:
                live.stop()
            except Exception:  # a terminal gone away: the run goes on
                pass
