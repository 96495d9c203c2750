"""The real tritonserver that the nvidia-pytriton wheel bundles, made runnable.

The wheel ships the server, the Python backend and one backend stub per
Python version; Triton expects the stub inside the backend folder, so a
backend directory is assembled once under the run directory.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path


class TritonNotInstalled(RuntimeError):
    pass


@dataclass(frozen=True)
class TritonDist:
    binary: Path
    backends: Path
    libraries: Path

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """Environment for tritonserver: its bundled libraries, and this
        interpreter first on PATH so Python models see the same packages.

        The backend stub embeds whichever libpython the loader finds; it must
        be this interpreter's own, or the stub would run this interpreter's
        standard library on another build of Python (and fail on symbols).
        """
        env = dict(base)
        libs = [str(self.libraries), *filter(None, [env.get("LD_LIBRARY_PATH")])]
        own = _interpreter_libdir()
        if own is not None:
            libs.insert(0, str(own))
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env


def locate(work_dir: Path) -> TritonDist:
    spec = find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonNotInstalled(
            "tritonserver not found: install the local extra (pip install -e '.[local]')"
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    dist = package / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonNotInstalled(f"nvidia-pytriton has no Python backend stub for Python {version}")
    backends = work_dir / "triton-backends"
    python_backend = backends / "python"
    python_backend.mkdir(parents=True, exist_ok=True)
    for item in (dist / "backends" / "python").iterdir():
        if item.is_file():
            _refresh(item, python_backend / item.name)
    _refresh(stub, python_backend / stub.name)
    return TritonDist(dist / "bin" / "tritonserver", backends, package.parent / "nvidia_pytriton.libs")


def _refresh(source: Path, target: Path) -> None:
    if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
        shutil.copy2(source, target)


def _interpreter_libdir() -> Path | None:
    """Where this interpreter's shared libpython lives, if it was built with one."""
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    if libdir and soname and (Path(libdir) / soname).is_file():
        return Path(libdir)
    return None
