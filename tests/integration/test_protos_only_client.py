"""A client generated from protos/ alone (no project code) calls every gateway RPC through Envoy."""

import os
import subprocess
import sys
from pathlib import Path

import google.api
import grpc_tools

REPO = Path(__file__).resolve().parents[2]
CLIENT = Path(__file__).parent / "clients" / "protos_only.py"


def generate(out: Path) -> None:
    """Python stubs from protos/, as any user would generate them."""
    out.mkdir()
    includes = [
        REPO / "protos",
        Path(grpc_tools.__file__).parent / "_proto",
        # google/api/annotations.proto and httpbody.proto, from googleapis-common-protos.
        Path(google.api.__path__[0]).parents[1],
    ]
    protos = sorted(str(p.relative_to(REPO / "protos")) for p in (REPO / "protos").rglob("*.proto"))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", *(f"-I{i}" for i in includes),
         f"--python_out={out}", f"--grpc_python_out={out}", *protos],
        check=True, cwd=REPO / "protos",
    )


def test_a_client_built_only_from_the_protos_calls_every_gateway_rpc(stack, tmp_path):
    generated = tmp_path / "voice_pipeline_generated"
    generate(generated)
    # -I: no user site, no PYTHONPATH, no script folder; the generated stubs are
    # the only voice.v1 on the path (put first, ahead of the project's .pth entries).
    script = (
        f"import sys; sys.path.insert(0, {str(generated)!r}); sys.argv = sys.argv[1:]; "
        f"import runpy; runpy.run_path({str(CLIENT)!r}, run_name='__main__')"
    )
    run = subprocess.run(
        [sys.executable, "-I", "-c", script, "x", f"127.0.0.1:{stack.config.api_port}",
         "untrained-v2-f0-48k"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count(" OK ") == 24, run.stdout
