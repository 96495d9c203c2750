"""The web playground Envoy serves at / (web/, edge.web), in headless Chromium against the
real stack: it loads and lists the voices, speaks as the audio streams in, saves the
speech, records a clip, and makes, uses and deletes a voice of its own.

The tests run in file order on one page: each step starts where the last left it.
The page reports its last Speak in ``window.playgroundLastRun`` (web/app.js).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import requests
import soundfile

from edge.web import PAGE_CSP
from tests.browser.conftest import CI, screenshot
from tests.real_speech import SENTENCE, real_speech

try:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:
    if CI:
        raise
    pytest.skip("the browser tests need the selenium package (make venv)", allow_module_level=True)

VOICE = "browser-test-voice"
# Three sentences: the stream carries one chunk per sentence.
TEXT = "The first sentence plays at once. The second one is made meanwhile. So is the third."
SPEAK_TIMEOUT = 180


def wait(browser, condition, timeout: float = 30, message: str = ""):
    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(
        lambda driver: condition(driver), message)


def console_errors(browser) -> list[str]:
    """The console's errors since the last call (failed loads included)."""
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def page_error(browser) -> str:
    box = browser.find_element(By.ID, "error")
    return box.text if box.is_displayed() else ""


def voice_names(browser) -> list[str]:
    return [option.get_attribute("value")
            for option in Select(browser.find_element(By.ID, "voice")).options]


def last_run(browser) -> dict | None:
    return browser.execute_script("return window.playgroundLastRun;")


def speak(browser, text: str, seed: int) -> dict:
    """Says ``text`` with the voice chosen; the run once its response has ended."""
    before = last_run(browser)
    field = browser.find_element(By.ID, "text")
    field.clear()
    field.send_keys(text)
    seed_field = browser.find_element(By.ID, "seed")
    seed_field.clear()
    seed_field.send_keys(str(seed))
    browser.find_element(By.ID, "speak").click()

    def ended(driver):
        run = last_run(driver)
        new = run is not None and (before is None or run["id"] != before["id"])
        return run if new and run["state"] != "running" else None

    return wait(browser, ended, SPEAK_TIMEOUT, "the run did not end")


def assert_spoke(browser, run: dict, chunks: int) -> None:
    assert run["state"] == "done", (run["error"], page_error(browser))
    assert run["chunks"] >= chunks, run
    assert run["audioSeconds"] > 0.5 and run["sampleRate"] >= 8000, run
    assert run["timing"]["total_seconds"] > 0, run
    shown = browser.find_element(By.ID, "t-first-page").text
    # JavaScript's Math.round: halves go up (Python's round takes them to even).
    assert shown == f"{math.floor(run['firstChunkMs'] + 0.5)} ms"


def test_the_page_loads_with_its_voices(stack, browser):
    reply = requests.get(f"{stack.api}/", timeout=10)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    assert reply.headers["content-security-policy"] == PAGE_CSP
    browser.get(f"{stack.api}/")
    assert browser.title == "Voice playground"
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"),
         message="the page never finished loading its voices")
    assert set(voice_names(browser)) >= {"demo", "demo-piper", "demo-spark"}
    assert Select(browser.find_element(By.ID, "voice")).first_selected_option.text == "demo (default)"
    assert browser.find_element(By.ID, "speak").is_enabled()
    assert page_error(browser) == ""
    assert console_errors(browser) == []


def test_speech_plays_while_it_is_still_streaming(stack, browser):
    run = speak(browser, TEXT, seed=7)
    assert_spoke(browser, run, chunks=2)
    assert run["voice"] == "demo" and run["engine"] == "ENGINE_PIPER"
    # The first sentence was scheduled, and started playing, before the response ended.
    assert run["firstChunkMs"] < run["firstAudioStartMs"] < run["responseEndMs"], run
    assert browser.find_element(By.ID, "t-tts").text.endswith(" s")
    assert "s / " in browser.find_element(By.ID, "t-rvc").text
    assert page_error(browser) == ""
    assert console_errors(browser) == []


# Each format's first bytes: RIFF, none (raw s16le), FLAC's, an MPEG frame's sync,
# Ogg's, an ADTS frame's sync.
MAGIC = {"wav": b"RIFF", "pcm": b"", "flac": b"fLaC", "mp3": b"\xff", "opus": b"OggS",
         "aac": b"\xff"}


def duration(path, fmt: str, rate: int) -> float:
    """Seconds of audio in a downloaded file (AAC: none read, 0)."""
    if fmt == "pcm":  # at the run's rate, which the page asked for
        return len(np.frombuffer(path.read_bytes(), "<i2")) / rate
    if fmt == "aac":  # ADTS, which libsndfile does not read
        return 0.0
    audio, file_rate = soundfile.read(path, dtype="float32")
    assert file_rate == rate, (fmt, file_rate)
    return len(audio) / rate


@pytest.mark.parametrize("fmt", list(MAGIC))
def test_the_speech_downloads(stack, browser, artifacts, fmt):
    """WAV is built in the page from the audio received; the other formats come from
    POST /v1/audio/speech with the run's text, voice and seed, at its rate."""
    run = last_run(browser)
    browser.find_element(By.CSS_SELECTOR, f"#downloads button[data-format='{fmt}']").click()
    link = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"a[data-format='{fmt}']"),
                60, f"no {fmt} link")[0]
    name = f"speech-{run['id']}.{fmt}"
    assert link.get_attribute("download") == name
    saved = artifacts / "downloads" / name
    wait(browser, lambda _: saved.exists() and saved.stat().st_size == int(
        link.get_attribute("data-bytes")), 30, f"{name} was not saved")
    assert saved.read_bytes().startswith(MAGIC[fmt])
    seconds = duration(saved, fmt, run["sampleRate"])
    if fmt != "aac":
        assert abs(seconds - run["audioSeconds"]) < 0.5, (seconds, run["audioSeconds"])
    assert page_error(browser) == ""
    assert console_errors(browser) == []


def test_an_api_error_shows_in_the_page(stack, browser, artifacts):
    """The edge's error shape, read and shown: a voice no longer there (one the menu
    still lists) is the gateway's 404."""
    browser.execute_script(
        "const menu = document.getElementById('voice');"
        "menu.append(new Option('gone', 'no-such-voice')); menu.value = 'no-such-voice';")
    run = speak(browser, "Hello.", seed=1)
    assert run["state"] == "error" and run["chunks"] == 0
    assert page_error(browser).startswith("404 NOT_FOUND: voice 'no-such-voice'")
    assert browser.find_element(By.ID, "speak-status").text == "Speaking failed."
    # The browser logs the failed call itself; nothing else.
    (logged,) = console_errors(browser)
    assert "v1/synthesize:stream" in logged and "404" in logged
    screenshot(browser, artifacts, "the-error-shown")
    browser.find_element(By.ID, "error-close").click()
    assert page_error(browser) == ""
    browser.find_element(By.ID, "refresh-voices").click()
    wait(browser, lambda _: "no-such-voice" not in voice_names(browser))


def test_a_clip_records_from_the_microphone(stack, browser):
    """Chromium's fake microphone, recorded with MediaRecorder and decoded in the page."""
    browser.find_element(By.CSS_SELECTOR, "#create-panel summary").click()
    info = browser.find_element(By.ID, "clip-info")
    browser.find_element(By.ID, "record-start").click()
    wait(browser, lambda _: float(info.get_attribute("data-recorded-seconds") or 0) >= 1.0,
         message="nothing was recorded")
    browser.find_element(By.ID, "record-stop").click()
    wait(browser, lambda _: info.get_attribute("data-seconds"), message="the recording was not decoded")
    assert float(info.get_attribute("data-seconds")) >= 0.9
    assert "recorded" in info.text
    assert page_error(browser) == ""
    assert console_errors(browser) == []


def test_a_voice_is_made_from_an_uploaded_clip(stack, browser, tmp_path):
    clip = tmp_path / "reference.wav"
    speech = real_speech(SENTENCE, 16_000)
    soundfile.write(clip, np.asarray(speech.samples), speech.sample_rate)
    browser.find_element(By.ID, "new-name").send_keys(VOICE)
    browser.find_element(By.ID, "new-description").send_keys("made by the browser test")
    browser.find_element(By.ID, "clip-file").send_keys(str(clip))
    info = browser.find_element(By.ID, "clip-info")
    wait(browser, lambda _: "reference.wav" in info.text and "ready" in info.text,
         message=f"the clip was not read: {info.text}")
    browser.find_element(By.ID, "new-transcript").send_keys(SENTENCE)
    rvc = Select(browser.find_element(By.ID, "new-rvc"))
    wait(browser, lambda _: len(rvc.options) > 1 or page_error(browser),
         message="the RVC voices were not listed")
    assert page_error(browser) == "", "GET /v1/rvc-voices failed"
    rvc.select_by_index(1)
    Select(browser.find_element(By.ID, "new-f0")).select_by_value("F0_METHOD_RMVPE")
    index_rate = browser.find_element(By.ID, "new-index-rate")
    index_rate.clear()
    index_rate.send_keys("0.5")
    browser.find_element(By.ID, "create-voice").click()
    status = browser.find_element(By.ID, "create-status")
    wait(browser, lambda _: status.text.startswith(("Created", "Could not")), 120,
         "the voice was neither made nor refused")
    assert status.text == f"Created the voice {VOICE}.", page_error(browser)
    assert VOICE in voice_names(browser)
    assert Select(browser.find_element(By.ID, "voice")).first_selected_option.get_attribute(
        "value") == VOICE
    assert console_errors(browser) == []


def test_the_new_voice_speaks(stack, browser):
    assert Select(browser.find_element(By.ID, "voice")).first_selected_option.get_attribute(
        "value") == VOICE, "no voice was made"
    run = speak(browser, "A voice of my own. It speaks twice.", seed=11)
    assert_spoke(browser, run, chunks=1)
    assert run["voice"] == VOICE
    assert page_error(browser) == ""
    assert console_errors(browser) == []


def test_the_new_voice_is_deleted(stack, browser):
    Select(browser.find_element(By.ID, "voice")).select_by_value(VOICE)
    browser.find_element(By.ID, "delete-voice").click()
    status = browser.find_element(By.ID, "speak-status")
    wait(browser, lambda _: status.text.startswith(("Deleted", "Could not")), 60,
         "the voice was neither deleted nor kept")
    assert status.text == f"Deleted the voice {VOICE}.", page_error(browser)
    assert VOICE not in voice_names(browser)
    listed = requests.get(f"{stack.api}/v1/voices", timeout=10).json()["voices"]
    assert VOICE not in [voice["name"] for voice in listed]
    assert console_errors(browser) == []
