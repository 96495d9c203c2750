"""The voice library through the edge's REST routes, on the whole local stack: a
voice made by POST /v1/voices keeps its clip's Spark tokens once it has spoken,
survives a restart of the stack and speaks the same audio for the same seed from
those tokens, without Triton's audio tokenizer; RVC voice uploads that are pickle bombs, not checkpoints
or over the size limit are refused with a 400 naming why, and nothing is written."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import requests

from localstack.supervise.spec import ProcessSpec
from tests.integration.stacks import reuse_models, stack_config, supervised
from tests.real_speech import real_speech
from tests.unit.rvc.upload_files import bomb_by_reduce, raw_bomb, voice_bytes

TIMEOUT = 300


def with_checkpoint_limit(limit: int):
    def change(specs: list[ProcessSpec]) -> list[ProcessSpec]:
        return [dataclasses.replace(s, env={**s.env, "RVC_MAX_CHECKPOINT_BYTES": str(limit)})
                if s.name == "rvc" else s for s in specs]
    return change


def voice_json(name: str) -> dict:
    clip = real_speech()
    return {
        "name": name, "description": "cloned in a test", "engine": "ENGINE_SPARK",
        "reference": {"audio": {"pcm": base64.b64encode(clip.samples.astype("<f4").tobytes()).decode(),
                                "sample_rate": clip.sample_rate,
                                "sample_format": "SAMPLE_FORMAT_PCM_F32LE", "channels": 1},
                      "transcript": "The quick brown fox jumps over the lazy dog."},
        "sampling": {"seed": 1234}, "skip_rvc": True,
    }


def speak(api: str, voice: str) -> np.ndarray:
    reply = requests.post(f"{api}/v1/synthesize", json={"text": "Hello there.", "voice": voice},
                          timeout=TIMEOUT)
    assert reply.status_code == 200, reply.text[:300]
    audio = reply.json()["audio"]
    assert audio["sample_format"] == "SAMPLE_FORMAT_PCM_F32LE"
    return np.frombuffer(base64.b64decode(audio["pcm"]), dtype="<f4")


def profile(run_dir: Path, name: str) -> dict:
    (path,) = [p for p in run_dir.rglob(f"{name}.json") if not p.parent.name.startswith(".")]
    return json.loads(path.read_text())


def tokenizer_runs(config) -> int:
    """How many requests Triton's audio_tokenizer has served since Triton started."""
    reply = requests.get(
        f"http://127.0.0.1:{config.triton_http_port}/v2/models/audio_tokenizer/stats", timeout=30)
    assert reply.status_code == 200, reply.text[:300]
    return sum(int(m["inference_count"]) for m in reply.json()["model_stats"])


def rvc_voices(api: str) -> list[str]:
    reply = requests.get(f"{api}/v1/rvc-voices", timeout=30)
    assert reply.status_code == 200, reply.text[:300]
    return sorted(m["name"] for m in reply.json()["models"])


def upload(api: str, name: str, pth: bytes) -> requests.Response:
    return requests.post(f"{api}/v1/rvc-voices", data={"name": name},
                         files={"pth": (f"{name}.pth", pth)}, timeout=TIMEOUT)


LIMIT = len(voice_bytes()) + 4096  # the RVC service's RVC_MAX_CHECKPOINT_BYTES here


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stack")
    reuse_models(tmp_path_factory, folder)
    return folder


@pytest.fixture(scope="module")
def first(run_dir):
    """The first stack on ``run_dir``, which the restart test stops (it runs last)."""
    config = stack_config(run_dir)
    with supervised(config, with_checkpoint_limit(LIMIT)) as running:
        yield config, running


def test_bad_rvc_uploads_are_refused_naming_why_and_nothing_is_written(first, tmp_path):
    config, _ = first
    api = f"http://127.0.0.1:{config.api_port}"
    installed = rvc_voices(api)
    marker = tmp_path / "ran"
    for pth, reason in (
        (bomb_by_reduce(marker), "pickle"),
        (raw_bomb(marker), "not an RVC WebUI checkpoint"),
        (b"this is no checkpoint at all", "not an RVC WebUI checkpoint"),
        (b"\0" * (LIMIT + 1), "RVC_MAX_CHECKPOINT_BYTES"),
    ):
        refused = upload(api, "mallory", pth)
        assert refused.status_code == 400, refused.text[:300]
        message = refused.json()["error"]["message"]
        assert reason in message, message
        assert rvc_voices(api) == installed
    assert not marker.exists()
    good = upload(api, "uploaded", voice_bytes())
    assert good.status_code == 200, good.text[:300]
    assert good.json()["name"] == "uploaded"
    assert rvc_voices(api) == sorted([*installed, "uploaded"])
    assert requests.delete(f"{api}/v1/rvc-voices/uploaded", timeout=30).status_code == 200
    assert rvc_voices(api) == installed


def test_a_made_voice_survives_a_restart_and_speaks_the_same(run_dir, first):
    config, running = first
    try:
        api = f"http://127.0.0.1:{config.api_port}"
        made = requests.post(f"{api}/v1/voices", json=voice_json("ada"), timeout=TIMEOUT)
        assert made.status_code == 200, made.text[:300]
        assert (made.json()["name"], made.json()["speaker"]) == ("ada", "reference")
        again = requests.post(f"{api}/v1/voices", json=voice_json("ada"), timeout=TIMEOUT)
        assert again.status_code == 409, again.text[:300]
        assert "speaker_tokens" not in profile(run_dir, "ada")
        before = speak(api, "ada")
        assert tokenizer_runs(config) == 1
        kept = profile(run_dir, "ada")["speaker_tokens"]
        assert len(kept["global_ids"]) == 32 and kept["semantic_ids"]
        assert kept["codec"].startswith("bicodec-")
    finally:
        running.stop()  # the whole first stack: a restart
    second = stack_config(run_dir)  # other ports: a new stack on the same folders
    with supervised(second):
        api = f"http://127.0.0.1:{second.api_port}"
        kept = requests.get(f"{api}/v1/voices/ada", timeout=30)
        assert kept.status_code == 200 and kept.json()["description"] == "cloned in a test"
        after = speak(api, "ada")
        assert before.size > 0
        np.testing.assert_array_equal(after, before)
        assert tokenizer_runs(second) == 0, "spoken from the kept tokens, not the clip"
        # A new clip of several MiB as JSON: PUT to the path template gets the body buffer.
        longer = voice_json("ada")
        tone = (0.2 * np.sin(np.arange(480_000) * 2 * np.pi * 150 / 48_000)).astype("<f4")
        longer["reference"]["audio"].update(pcm=base64.b64encode(tone.tobytes()).decode(),
                                            sample_rate=48_000)
        longer["description"] = "a longer clip"
        replaced = requests.put(f"{api}/v1/voices/ada", json=longer, timeout=TIMEOUT)
        assert replaced.status_code == 200, replaced.text[:300]
        assert replaced.json()["description"] == "a longer clip"
        gone = requests.delete(f"{api}/v1/voices/ada", timeout=30)
        assert gone.status_code == 200, gone.text[:300]
        assert requests.get(f"{api}/v1/voices/ada", timeout=30).status_code == 404
