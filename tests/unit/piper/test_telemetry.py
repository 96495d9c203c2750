"""Speaking with Piper writes nothing outside the process: no onnxruntime telemetry."""

import os
import subprocess
import sys
from pathlib import Path

SPEAK = (
    "from piper_serving.speech import PackagedSpeaker\n"
    "samples, rate = PackagedSpeaker().speak('Nothing leaves this machine.')\n"
    "assert samples.size > rate // 2, samples.size\n"
)
# onnxruntime keeps quiet by itself where one of these says it runs in CI; the
# speech runs without them, so that only our setting can be what keeps it quiet.
CI_MARKERS = ("CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS",
              "JENKINS_URL", "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR",
              "BITBUCKET_BUILD_NUMBER")


def _files_left(tmp_path: Path, **env) -> list[str]:
    temp, home = tmp_path / "tmp", tmp_path / "home"
    temp.mkdir()
    home.mkdir()
    clean = {k: v for k, v in os.environ.items()
             if k != "ORT_DISABLE_TELEMETRY" and k not in CI_MARKERS}
    subprocess.run(
        [sys.executable, "-c", SPEAK],
        env={**clean, "PYTHONPATH": os.pathsep.join(sys.path), "TMPDIR": str(temp),
             "HOME": str(home), **env},
        check=True, timeout=120,
    )
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())


def test_piper_speech_leaves_no_files_in_tmp_or_home(tmp_path):
    assert _files_left(tmp_path) == []


def test_an_operator_who_opts_in_gets_onnxruntime_s_telemetry_files(tmp_path):
    """The control: the same speech with telemetry left on writes its files."""
    left = _files_left(tmp_path, ORT_DISABLE_TELEMETRY="0")
    assert "tmp/.ses" in left, left
