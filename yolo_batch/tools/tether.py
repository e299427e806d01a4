"""``python -m yolo_batch.tools.tether PID COMMAND...``: become COMMAND, which gets SIGTERM when process PID dies.

`yolo_batch.tools.cmdline.run_child` starts every training (``yolo-batch sweep``, ``demo``, the Ray engine's
tasks) through this on Linux. The training runs in a session of its own, so that Ctrl-C at the terminal reaches
only its parent, which then stops it; but a parent that dies without a word (``kill -9``, the OOM killer, a Ray
worker that went with its node) would leave it training on, unseen, into the run folder that the same sweep,
run again, resumes into: two trainings in one folder. Linux's parent-death signal ends it instead, with the
SIGTERM that a stop sends, at the state its last epoch saved. The signal is set here, in a fresh
single-threaded process, then this process ``exec``s the command (the signal survives ``exec``): Python's
``preexec_fn`` is not safe in the many-threaded Ray worker.

Exit status: the command's; 143 (as after SIGTERM) without running it if PID was already gone; 127 with one
line on stderr if the command cannot be started.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def main(argv: list[str]) -> int:
    """Set the parent-death signal, check the parent is still ``argv[0]``, then exec ``argv[1:]``."""
    parent, cmd = int(argv[0]), argv[1:]
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl here: the command runs untethered, as before
        pass
    if os.getppid() != parent:  # the parent died before the signal was set: nothing would stop the command
        return 128 + int(signal.SIGTERM)
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        print(f"yolo-batch: error: cannot start {cmd[0]}: {e.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
