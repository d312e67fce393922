"""Several fold fits side by side: one training process per fold, a few at a time.

A small fusion fit uses extra cores poorly (on 2 cores, one fit runs about 1.4x faster at 2
threads than at 1), so on a CPU machine folds run sooner as single-thread processes side by side
than one after another.
Each process gets ``cores // processes`` torch threads; its output lines are prefixed with its
label (``fold 2``, or ``split 1 fold 2`` under cross-validation), and each finished run logs how
many are done. The first failing run stops the others (their finished epochs stay in
``last.pt``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pipeline.errors import FusionerError
from pipeline.train.distributed import cpu_cores

log = logging.getLogger("fusioner.fit")


@dataclass(frozen=True)
class FoldPlan:
    """How many fold processes run at once, and the torch threads of each."""

    processes: int
    threads: int

    @classmethod
    def for_machine(cls, folds: int, jobs: int = 0, cores: int | None = None) -> FoldPlan:
        """``jobs`` processes (0: one per core), never more than ``folds``; cores shared out."""
        cores = cores or cpu_cores()
        processes = max(1, min(folds, jobs if jobs > 0 else cores))
        return cls(processes, max(1, cores // processes))


class FoldRunner:
    """Runs one command per label (``fold 0``, ``split 1 fold 2``) under a ``FoldPlan``; stops
    them all at the first failure."""

    def __init__(self, commands: Mapping[str, Sequence[str]], plan: FoldPlan) -> None:
        self.commands = dict(commands)
        self.plan = plan
        self._lock = threading.Lock()
        self._running: dict[str, subprocess.Popen[str]] = {}
        self._failure: str | None = None
        self._done = 0

    def run(self) -> dict[str, float]:
        """Seconds each run took; ``FusionerError`` naming the first run that failed."""
        log.info("fitting %s: %d at a time, %d torch thread(s) each",
                 ", ".join(self.commands), self.plan.processes, self.plan.threads)
        with ThreadPoolExecutor(self.plan.processes) as pool:
            seconds = dict(zip(self.commands, pool.map(self._run_fold, self.commands),
                               strict=True))
        if self._failure is not None:
            raise FusionerError(self._failure)
        return seconds

    def _run_fold(self, label: str) -> float:
        with self._lock:
            if self._failure is not None:
                return 0.0
            started = time.perf_counter()
            process = subprocess.Popen(
                list(self.commands[label]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, bufsize=1, env=thread_env(self.plan.threads))
            self._running[label] = process
        last = ""
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip():
                last = line.strip()
            sys.stderr.write(f"[{label}] {line}")
        code = process.wait()
        took = time.perf_counter() - started
        with self._lock:
            del self._running[label]
            if code != 0 and self._failure is None:
                reason = last.removeprefix("error: ")
                self._failure = f"{label} failed (exit {code}): {reason}"
                for other in self._running.values():
                    other.terminate()
            if code == 0:
                self._done += 1
                log.info("%s done in %.0f s (%d of %d done)", label, took, self._done,
                         len(self.commands))
        return took


def thread_env(threads: int) -> dict[str, str]:
    """This process's environment with torch/BLAS limited to ``threads`` threads."""
    limit = str(threads)
    return {**os.environ, "OMP_NUM_THREADS": limit, "MKL_NUM_THREADS": limit}
