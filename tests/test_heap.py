"""The collector settings a serving process takes once its app is built."""

from __future__ import annotations

import subprocess
import sys

from tally import heap


def test_settle_freezes_what_exists_and_collects_young_objects_less_often() -> None:
    script = (
        "import gc\n"
        "from tally import heap\n"
        "built_at_start = [[i] for i in range(1000)]\n"
        "heap.settle()\n"
        "print(gc.get_freeze_count(), gc.get_threshold()[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout.split()
    frozen, young = int(out[0]), int(out[1])
    assert frozen > 1000  # the startup objects, the list built above included
    assert young == heap.YOUNG_THRESHOLD
