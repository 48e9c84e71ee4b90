"""Child processes of ``tally serve`` end when their supervisor ends, however it ends.

Without this, a supervisor killed with SIGKILL would leave HTTP workers holding the port and a store
process holding the DuckDB file's lock, and the next ``tally serve`` could not start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import threading
import time

_PR_SET_PDEATHSIG = 1


def exit_with_parent(parent: int, sig: signal.Signals = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` when ``parent`` dies; elsewhere, poll for it.

    ``parent`` is the pid the supervisor passed down, not ``os.getppid()`` read here: if the
    supervisor died while this process was still starting, we are already someone else's child.
    """
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        try:
            libc = ctypes.CDLL(libc_name, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os.kill(os.getpid(), sig)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), sig)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
