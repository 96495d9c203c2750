"""Runs a program with a /tmp of its own: ``python -I private_tmp.py DIR -- PROGRAM ARGS...``.

tritonserver's Python backend makes ``/tmp/python_env_XXXXXX`` when it starts
(the path is fixed in its code, so TMPDIR does not move it) and removes it only
when it exits cleanly: every tritonserver that was killed left one in the
system's temp directory. Run through this launcher, tritonserver sees DIR (the
stack's run directory's triton-tmp, cleared before each start) as /tmp, in a
mount namespace of its own that ends with it; nothing it makes in /tmp lands in
the real one.

The entries of the real /tmp that the program needs (a path under /tmp in its
arguments, its environment or its working directory: a run directory under
pytest's /tmp/pytest-of-<user>, a virtual environment) are mounted back at the
same paths. A root process unshares the mount namespace; any other one a user
namespace too, mapping only its own ids, where the kernel allows it. Where
neither is allowed (a container without CAP_SYS_ADMIN, a kernel that forbids
unprivileged user namespaces) the program runs as it would have, with a
warning. Standard library only: it runs in tritonserver's environment, outside
the repository's packages, just before becoming tritonserver.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys

SYSTEM_TMP = "/tmp"
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_MNT_DETACH = 2


class Unavailable(OSError):
    pass


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise Unavailable(errno, f"{what}: {os.strerror(errno)}")


def needed_entries(command: list[str], environ: dict[str, str], cwd: str) -> list[str]:
    """The names in /tmp that ``command``, ``environ`` or ``cwd`` refer to (first level)."""
    values = [cwd]
    for arg in command:
        values.extend(arg.split("="))  # --model-repository=/tmp/...
    for value in environ.values():
        values.extend(value.split(os.pathsep))
    names = set()
    for value in values:
        if value.startswith(SYSTEM_TMP + "/"):
            name = value[len(SYSTEM_TMP) + 1:].split("/", 1)[0]
            if name not in ("", ".", ".."):
                names.add(name)
    return sorted(names)


def _enter_namespace(libc) -> None:
    if libc.unshare(_CLONE_NEWNS) == 0:
        return
    uid, gid = os.geteuid(), os.getegid()
    _check(libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):
        try:
            with open(f"/proc/self/{name}", "w") as file:
                file.write(text)
        except OSError as exc:
            raise Unavailable(exc.errno, f"/proc/self/{name}: {exc.strerror}") from None


def isolate(private: str, keep: list[str]) -> None:
    """Mount ``private`` on /tmp for this process from now on, with ``keep`` mounted back."""
    libc = _libc()
    libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_void_p)
    _enter_namespace(libc)
    _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None),
           "making the mounts private")
    # Handles on what is kept, taken in the new namespace (a bind mount's source must
    # be one of its mounts) while the real /tmp is still in sight.
    handles = {}
    for name in keep:
        try:
            handles[name] = os.open(os.path.join(SYSTEM_TMP, name), os.O_PATH)
        except FileNotFoundError:
            continue
    try:
        _check(libc.mount(os.fsencode(private), SYSTEM_TMP.encode(), None, _MS_BIND, None),
               f"mounting {private} on {SYSTEM_TMP}")
        try:
            for name, handle in handles.items():
                target = os.path.join(SYSTEM_TMP, name)
                if stat.S_ISDIR(os.fstat(handle).st_mode):
                    os.makedirs(target, exist_ok=True)
                else:
                    open(target, "a").close()
                _check(libc.mount(f"/proc/self/fd/{handle}".encode(), target.encode(), None,
                                  _MS_BIND | _MS_REC, None), f"mounting {target} back")
        except BaseException:
            libc.umount2(SYSTEM_TMP.encode(), _MNT_DETACH)  # the real /tmp again
            raise
    finally:
        for handle in handles.values():
            os.close(handle)


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] != "--":
        sys.exit("usage: private_tmp.py DIR -- PROGRAM [ARGS...]")
    private, command = os.path.abspath(argv[1]), argv[3:]
    try:
        isolate(private, needed_entries(command, dict(os.environ), os.getcwd()))
    except OSError as exc:
        print(f"private_tmp: no /tmp of its own for {os.path.basename(command[0])} ({exc}); "
              f"what it leaves in {SYSTEM_TMP} when killed stays there", file=sys.stderr,
              flush=True)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv)
