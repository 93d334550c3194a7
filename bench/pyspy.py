"""Optional sampling profiles with py-spy (not a project dependency).

Found as $PY_SPY, on PATH, or installed apart from the venv with
`.venv/bin/pip install --target /tmp/qt-pyspy py-spy`. Absent: profiling is skipped.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

CANDIDATES = ("/tmp/qt-pyspy/bin/py-spy",)


def find() -> str | None:
    explicit = os.environ.get("PY_SPY")
    if explicit and Path(explicit).exists():
        return explicit
    found = shutil.which("py-spy")
    if found:
        return found
    return next((c for c in CANDIDATES if Path(c).exists()), None)


class Recorder:
    """`py-spy record --format raw` on some pids while the block runs."""

    def __init__(self, out_dir: Path, targets: dict[str, int], rate: int = 100):
        self.exe = find()
        self.out_dir, self.targets, self.rate = out_dir, targets, rate
        self.procs: list[subprocess.Popen] = []
        self.files: dict[str, Path] = {}

    def __enter__(self) -> Recorder:
        if self.exe is None:
            return self
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for label, pid in self.targets.items():
            path = self.out_dir / f"{label}.txt"
            self.files[label] = path
            self.procs.append(subprocess.Popen(
                [self.exe, "record", "--pid", str(pid), "--rate", str(self.rate), "--nonblocking",
                 "--format", "raw", "--output", str(path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


def _frame_name(frame: str) -> str:
    # raw frames look like "consume (qtweb/events/bus.py:140)"; keep function and file, drop the line
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    short = "/".join(Path(where).parts[-2:]) if where else ""
    return f"{name} ({short})" if short else name


# The frame a breakdown starts from: the publisher's publish() and a worker child's task.
FOCUS = ("publish (events/bus.py)", "build_tracer.<locals>.trace_task (app/trace.py)")


def breakdown(path: Path, top: int = 12) -> dict:
    """Share of all samples that had each function on the stack at or below the focus frame
    (publish() for the publisher, the task for a worker child), plus the focus frame's own
    share. Samples outside the focus (idle loop, Celery plumbing) count in the total only."""
    counts: Counter[str] = Counter()
    total = focused = 0
    if not path.exists():
        return {"samples": 0, "focus": None, "focus_share": 0.0, "top": []}
    focus_name = None
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        k = int(n)
        total += k
        frames = [_frame_name(f) for f in stack.split(";")]
        idx = next((i for i, f in enumerate(frames) if f in FOCUS), None)
        if idx is None:
            continue
        focus_name = frames[idx]
        focused += k
        for name in set(frames[idx + 1:]):
            counts[name] += k
    if not total:
        return {"samples": 0, "focus": None, "focus_share": 0.0, "top": []}
    return {
        "samples": total,
        "focus": focus_name,
        "focus_share": focused / total,
        "top": [(name, c / total) for name, c in counts.most_common(top)],
    }
