"""A cloned voice keeps its clip's Spark tokens: the first synthesis that encodes the
clip writes them into the profile, later ones (in any process) speak from them, and
tokens the TTS side refuses (other weights) give way to the clip, whose new tokens
are kept instead. Over real gRPC, on the stack of test_gateway_servicer."""

import json

import pytest
import soundfile
from voice.v1 import gateway_pb2, tts_pb2

from services.common.errors import InvalidArgument
from services.gateway.params_proto import speaker_from_proto, speaker_to_proto
from services.gateway.speech_params import Reference, Speaker, SpeakerTokens, VoiceSpec
from services.gateway.voice_library import VoiceLibrary
from services.gateway.voice_profiles import load_profile
from services.gateway.voices import VoiceBook
from tests.unit.gateway import test_gateway_servicer
from tests.unit.gateway.test_voice_library import clip, cloned

stack = test_gateway_servicer.stack  # the fixture, shared
GLOBALS = list(range(100, 132))
SEMANTICS = [7, 8, 9, 8191]


def ada_spec() -> VoiceSpec:
    return VoiceSpec(name="ada", speaker=Speaker(reference=Reference(clip(), "Said.")))


def tokens(codec="bicodec-old") -> tts_pb2.SpeakerTokens:
    return tts_pb2.SpeakerTokens(global_ids=GLOBALS, semantic_ids=SEMANTICS,
                                 transcript="What the clip says.", codec=codec)


def profile_json(stack, name="ada") -> dict:
    return json.loads((stack["voices"] / f"{name}.json").read_text())


async def say(stack, text="Hello.", voice="ada"):
    return await stack["stub"].Synthesize(gateway_pb2.SynthesizeRequest(
        text=text, voice=voice, skip_rvc=True))


async def test_the_first_synthesis_keeps_the_tokens_and_the_next_speaks_from_them(stack):
    await stack["stub"].CreateVoice(cloned())
    assert "speaker_tokens" not in profile_json(stack)
    stack["tts"].tokens = tokens()
    await say(stack)
    kept = profile_json(stack)["speaker_tokens"]
    assert kept == {"global_ids": GLOBALS, "semantic_ids": SEMANTICS, "codec": "bicodec-old"}
    # A new process reading the folder speaks from them, with the clip's transcript.
    speaker = VoiceBook(stack["voices"]).get("ada").speaker
    assert speaker.tokens == SpeakerTokens(tuple(GLOBALS), tuple(SEMANTICS), "bicodec-old",
                                           "What the clip says.")
    assert speaker.source == "reference"  # the voice is still listed as a clone
    await say(stack, "One sentence. And another one.")
    assert [s["speaker"] for s in stack["tts"].seen] == ["reference", "tokens", "tokens"]
    listed = await stack["stub"].GetVoice(gateway_pb2.GetVoiceRequest(name="ada"))
    assert (listed.speaker, listed.problem) == ("reference", "")


async def test_refused_tokens_give_way_to_the_clip_whose_new_tokens_are_kept(stack):
    await stack["stub"].CreateVoice(cloned())
    stack["tts"].tokens = tokens()
    await say(stack)
    stack["tts"].codec, stack["tts"].tokens = "bicodec-new", tokens("bicodec-new")
    reply = await say(stack, "One sentence. And another one.")
    assert reply.audio.pcm
    assert [s["speaker"] for s in stack["tts"].seen] == [
        "reference", "tokens", "reference", "speaker_id"]
    assert profile_json(stack)["speaker_tokens"]["codec"] == "bicodec-new"
    await say(stack)
    assert stack["tts"].seen[-1]["speaker"] == "tokens"


async def test_a_requests_own_clip_keeps_nothing(stack):
    await stack["stub"].CreateVoice(cloned())
    stack["tts"].tokens = tokens()
    own = cloned().reference
    await stack["stub"].Synthesize(gateway_pb2.SynthesizeRequest(
        text="Hello.", voice="ada", skip_rvc=True, speaker=tts_pb2.SpeakerPrompt(reference=own)))
    assert "speaker_tokens" not in profile_json(stack)


async def test_an_update_without_a_speaker_keeps_the_tokens_and_a_new_clip_drops_them(stack):
    await stack["stub"].CreateVoice(cloned())
    stack["tts"].tokens = tokens()
    await say(stack)
    await stack["stub"].UpdateVoice(gateway_pb2.VoiceSpec(name="ada", description="renamed"))
    assert profile_json(stack)["speaker_tokens"]["codec"] == "bicodec-old"
    await stack["stub"].UpdateVoice(cloned(audio=clip(frequency=300.0)))
    assert "speaker_tokens" not in profile_json(stack)


def test_tokens_are_kept_only_for_the_clip_that_was_encoded(tmp_path):
    book = VoiceBook(tmp_path)
    library = VoiceLibrary(book)
    library.create(ada_spec())
    encoded = book.get("ada").speaker.reference
    kept = SpeakerTokens(tuple(GLOBALS), tuple(SEMANTICS), "bicodec-old")
    other = Reference(clip(frequency=300.0), origin="ada")
    assert not library.remember_tokens(other, kept), "the profile's clip is another"
    assert not library.remember_tokens(Reference(encoded.audio, origin="bob"), kept)
    bad = SpeakerTokens(tuple(GLOBALS[:31]), tuple(SEMANTICS), "bicodec-old")
    assert not library.remember_tokens(encoded, bad), "tokens the loader would refuse"
    assert "speaker_tokens" not in json.loads((tmp_path / "ada.json").read_text())
    assert library.remember_tokens(encoded, kept)
    assert not library.remember_tokens(encoded, kept), "already kept"
    assert book.get("ada").speaker.tokens.codec == "bicodec-old"
    text = (tmp_path / "ada.json").read_text()
    assert f'"global_ids": {json.dumps(GLOBALS)}' in text, "one line per list"


@pytest.mark.parametrize("tokens_, message", [
    ({"global_ids": GLOBALS[:31], "semantic_ids": SEMANTICS, "codec": "c"},
     "speaker_tokens.global_ids must be a list of 32 integers in 0..4095"),
    ({"global_ids": GLOBALS, "semantic_ids": [8192], "codec": "c"},
     "speaker_tokens.semantic_ids must be a list of 1..100000 integers in 0..8191"),
    ({"global_ids": GLOBALS, "semantic_ids": [], "codec": "c"}, "speaker_tokens.semantic_ids"),
    ({"global_ids": GLOBALS, "semantic_ids": [True], "codec": "c"}, "speaker_tokens.semantic_ids"),
    ({"global_ids": GLOBALS, "semantic_ids": SEMANTICS}, "speaker_tokens.codec is required"),
    ({"global_ids": GLOBALS, "semantic_ids": SEMANTICS, "codec": ""}, "speaker_tokens.codec"),
    ({"global_ids": GLOBALS, "semantic_ids": SEMANTICS, "codec": "c", "x": 1},
     "speaker_tokens.x is not a known field"),
    ([1, 2], "speaker_tokens must be an object"),
])
def test_bad_speaker_tokens_are_refused_naming_why(tmp_path, tokens_, message):
    VoiceLibrary(VoiceBook(tmp_path)).create(ada_spec())
    data = json.loads((tmp_path / "ada.json").read_text())
    (tmp_path / "ada.json").write_text(json.dumps({**data, "speaker_tokens": tokens_}))
    with pytest.raises(InvalidArgument) as caught:
        load_profile(tmp_path / "ada.json")
    assert message in caught.value.message


def test_speaker_tokens_go_with_a_clip(tmp_path):
    (tmp_path / "ada.json").write_text(json.dumps({
        "control": {"gender": "female"},
        "speaker_tokens": {"global_ids": GLOBALS, "semantic_ids": SEMANTICS, "codec": "c"}}))
    with pytest.raises(InvalidArgument, match="speaker_tokens goes with reference_audio"):
        load_profile(tmp_path / "ada.json")


def test_a_speaker_with_tokens_is_sent_as_its_tokens_and_read_back():
    given = SpeakerTokens(tuple(GLOBALS), tuple(SEMANTICS), "bicodec-old", "Said.")
    message = speaker_to_proto(Speaker(reference=Reference(clip(), "Said."), tokens=given))
    assert message.WhichOneof("source") == "tokens"
    assert message.tokens == tts_pb2.SpeakerTokens(
        global_ids=GLOBALS, semantic_ids=SEMANTICS, transcript="Said.", codec="bicodec-old")
    read = speaker_from_proto(message)
    assert read == Speaker(tokens=given) and read.source == "tokens"


def test_an_operators_own_profile_is_never_rewritten(tmp_path):
    """Tokens are kept only in voices the library made (its clip names): a profile an
    operator wrote, clip and all, stays byte for byte as written."""
    soundfile.write(tmp_path / "narrator.wav", clip().samples, clip().sample_rate,
                    subtype="FLOAT")
    profile = tmp_path / "narrator.json"
    profile.write_text('{"reference_audio": "narrator.wav", "reference_text": "Hi."}')
    book = VoiceBook(tmp_path)
    library = VoiceLibrary(book)
    encoded = book.get("narrator").speaker.reference
    kept = SpeakerTokens(tuple(GLOBALS), tuple(SEMANTICS), "bicodec-old")
    assert not library.remember_tokens(encoded, kept)
    assert profile.read_text() == '{"reference_audio": "narrator.wav", "reference_text": "Hi."}'
