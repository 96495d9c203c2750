"""Aliases: OpenAI's voice names and configured ones, resolved to profiles wherever a voice is named."""

import pytest

from services.common.errors import FailedPrecondition, NotFound
from services.common.settings import SettingsError, from_env
from services.gateway.jobs import build_job
from services.gateway.settings import GatewaySettings
from services.gateway.speech_params import Conversion, Sampling, Speaker
from services.gateway.voice_aliases import OPENAI_VOICES, alias_table
from services.gateway.voices import VoiceBook
from tests.unit.gateway.test_voices import control_profile, write_profile


def piper_profile(directory, name):
    return write_profile(directory, name, engine="piper", description=name)


def test_openais_voice_names_stand_for_the_default_profile():
    table = alias_table(())
    assert sorted(table) == sorted(OPENAI_VOICES) and len(OPENAI_VOICES) == 11
    assert set(table.values()) == {""}


def test_entries_remap_openais_names_and_add_new_ones():
    table = alias_table(("alloy=narrator", " bob = demo-spark "))
    assert table["alloy"] == "narrator" and table["bob"] == "demo-spark"
    assert table["echo"] == ""  # the others keep standing for the default


@pytest.mark.parametrize(("entries", "fragment"), [
    (("alloy",), "'alloy' is not alias=profile"),
    (("alloy=",), "the profile '' must match"),
    (("../x=demo",), "the alias '../x' must match"),
    (("a=demo", "a=narrator"), "the alias 'a' is given twice"),
])
def test_malformed_entries_are_named(entries, fragment):
    with pytest.raises(ValueError, match=fragment):
        alias_table(entries)


def test_the_setting_is_read_and_checked_at_start(tmp_path):
    piper_profile(tmp_path, "narrator")
    env = {"GATEWAY_VOICES_DIR": str(tmp_path), "GATEWAY_VOICE_ALIASES": "alloy=narrator,x=narrator"}
    settings = from_env(GatewaySettings, "GATEWAY", env)
    assert settings.aliases()["alloy"] == "narrator" and settings.aliases()["x"] == "narrator"

    with pytest.raises(SettingsError, match="GATEWAY_VOICE_ALIASES: 'echo' is not alias=profile"):
        from_env(GatewaySettings, "GATEWAY", {**env, "GATEWAY_VOICE_ALIASES": "echo"})
    with pytest.raises(SettingsError) as caught:
        from_env(GatewaySettings, "GATEWAY", {**env, "GATEWAY_VOICE_ALIASES": "echo=nobody"})
    assert "the alias 'echo' stands for 'nobody'" in str(caught.value)
    assert f"no voice profile nobody.json in {tmp_path}" in str(caught.value)
    with pytest.raises(SettingsError, match="GATEWAY_VOICES_DIR"):
        from_env(GatewaySettings, "GATEWAY", {"GATEWAY_VOICE_ALIASES": "echo=narrator"})


def test_without_the_setting_openais_names_need_no_profile():
    assert from_env(GatewaySettings, "GATEWAY", {}).aliases() == alias_table(())


def book(directory, default="demo", **aliases):
    return VoiceBook(directory, default, aliases={**alias_table(()), **aliases})


def test_an_alias_resolves_to_its_profile_or_the_default(tmp_path):
    piper_profile(tmp_path, "demo")
    control_profile(tmp_path, "narrator")
    voices = book(tmp_path, echo="narrator")

    assert voices.get("alloy").name == "demo"
    assert voices.get("echo").name == "narrator"


def test_a_profile_named_like_an_alias_wins(tmp_path):
    piper_profile(tmp_path, "demo")
    piper_profile(tmp_path, "alloy")

    assert book(tmp_path).get("alloy").name == "alloy"


def test_aliases_work_wherever_a_voice_is_named(tmp_path):
    control_profile(tmp_path, "narrator", rvc_model="alice")
    voices = book(tmp_path, default="", nova="narrator")

    job = build_job(voices, "nova", "Hello.")
    assert job.speaker.source == "control"
    assert job.conversion.model == "alice"
    resolved = voices.resolve("nova", Speaker(), Sampling(), Conversion(pitch_shift=3), False)
    assert (resolved.conversion.model, resolved.conversion.pitch_shift) == ("alice", 3)


def test_an_alias_that_leads_nowhere_says_what_it_stands_for(tmp_path):
    piper_profile(tmp_path, "demo")
    with pytest.raises(FailedPrecondition, match="'alloy' stands for the default voice, and no"):
        book(tmp_path, default="").get("alloy")
    with pytest.raises(NotFound, match="voice 'echo' stands for 'gone', which is not defined; "
                                       "known voices: demo"):
        book(tmp_path, echo="gone").get("echo")
    write_profile(tmp_path, "broken", engine="nope")
    with pytest.raises(FailedPrecondition, match="'echo' stands for 'broken', which cannot be used"):
        book(tmp_path, echo="broken").get("echo")
    with pytest.raises(FailedPrecondition, match="default voice 'missing' is not defined"):
        book(tmp_path, default="missing").get("alloy")


def test_list_voices_shows_each_profiles_aliases(tmp_path):
    piper_profile(tmp_path, "demo")
    piper_profile(tmp_path, "narrator")
    piper_profile(tmp_path, "sage")  # hides the alias of that name

    listed = {voice.name: list(voice.aliases) for voice in book(tmp_path, echo="narrator",
                                                                 reader="narrator").profiles()}

    assert listed["narrator"] == ["echo", "reader"]
    assert listed["demo"] == sorted(set(OPENAI_VOICES) - {"echo", "sage"})
    assert listed["sage"] == []
