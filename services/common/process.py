"""Linux process controls shared by the stack supervisor and worker pools."""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_libc = ctypes.CDLL(None, use_errno=True)
# Absent off Linux; there these controls quietly do nothing.
_prctl = getattr(_libc, "prctl", None)


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``sig`` to this process when its parent exits.

    Safe as a ``preexec_fn``. With ``parent_pid``, returns False if that parent
    already exited before the request was made (the kernel would never signal).
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(sig))
    return parent_pid is None or os.getppid() == parent_pid


# Run by a fresh interpreter as ``python -I -c LAUNCHER <parent pid> <program> <args>``:
# asks for SIGKILL when the parent exits, then becomes the program (the request
# survives exec). A preexec_fn would do the same between fork and exec, but a
# parent with gRPC threads may crash there: only async-signal-safe code is sound
# in a forked child of a threaded process.
LAUNCHER = (
    "import ctypes, os, sys\n"
    "prctl = getattr(ctypes.CDLL(None), 'prctl', None)\n"
    "prctl is None or prctl(1, 9)\n"
    "os.getppid() == int(sys.argv[1]) or os._exit(70)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def dying_with_me(argv: list[str], python: str) -> list[str]:
    """``argv`` to run as a child that the kernel kills when this process exits."""
    return [python, "-I", "-c", LAUNCHER, str(os.getpid()), *argv]


def set_process_name(name: str) -> None:
    """Name this process as ps/top show it (the kernel keeps 15 bytes)."""
    if _prctl is not None:
        _prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]))
