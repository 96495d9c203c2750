"""The old server's HTTP contract: form fields in, WAV bytes out.

Requests arrive as raw bodies (``google.api.HttpBody`` through Envoy):
multipart/form-data as the old clients send it, URL-encoded forms, or JSON
with files as base64. Field names, types and defaults are the old server's;
a field nobody knows is refused, since the old server silently ignored typos
(``skip_rcv``) that changed what a client got.
"""

from __future__ import annotations

import base64
import difflib
import email.parser
import email.policy
import urllib.parse
from dataclasses import dataclass, field, replace

from services.common.audio import PcmAudio, decode_container, to_mono
from services.common.errors import InvalidArgument, ServiceError
from services.common.seeds import check_seed
from services.gateway.audio_formats import parse_format
from services.gateway.jobs import SpeechJob, build_job
from services.gateway.json_body import json_object
from services.gateway.legacy_status import OLD_DEFAULTS
from services.gateway.params_proto import conversion_to_proto
from services.gateway.speech_params import (
    F0_METHODS,
    Conversion,
    Reference,
    Sampling,
    Speaker,
    overlay,
)
from services.gateway.voices import VoiceBook

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}

# Every field of the old server's routes (a client may send one route's set to
# another: the old server ignored what a route does not use, and so do we), then ours.
OLD_FIELDS = frozenset({
    "text", "reference_text", "reference_audio", "audio", "skip_rvc", "pitch_shift",
    "f0_method", "index_rate", "filter_radius", "rms_mix_rate", "protect",
})
OUR_FIELDS = frozenset({"voice", "model", "seed", "sample_rate", "response_format", "resample_sr"})
KNOWN_FIELDS = OLD_FIELDS | OUR_FIELDS

@dataclass(frozen=True)
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)

    def text(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default)

    def number(self, name: str, kind: type, default=None):
        raw = self.fields.get(name, "").strip()
        if not raw:
            return default
        try:
            return kind(raw)
        except ValueError:
            raise InvalidArgument(f"{name} {raw[:40]!r} is not a {kind.__name__}") from None

    def flag(self, name: str) -> bool:
        raw = self.fields.get(name, "").strip().lower()
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        raise InvalidArgument(f"{name} {raw[:40]!r} is not true or false")

    def audio(self, name: str, required: bool = True, max_seconds: float | None = None,
              limit: str = "") -> PcmAudio | None:
        """The file ``name`` as mono; longer than ``max_seconds`` is refused naming ``limit``."""
        data = self.files.get(name)
        if data is None:
            if required:
                raise InvalidArgument(f"the file {name} is required")
            return None
        if not data:
            # Sent but empty (a form's file input left blank, a failed read): never
            # taken for no file, which would speak or convert in another voice.
            raise InvalidArgument(f"the file {name} is empty (0 bytes)")
        try:
            return to_mono(decode_container(data, max_seconds, limit))
        except InvalidArgument as exc:
            raise InvalidArgument(f"{name}: {exc.message}") from None


def parse_form(content_type: str, body: bytes, known: frozenset[str] = KNOWN_FIELDS) -> Form:
    """The fields and files of a multipart, URL-encoded or JSON body; unknown names are refused."""
    form = _parse(content_type, body)
    for name in (*form.fields, *form.files):
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidArgument(
                f"unknown field {name[:40]!r}{hint}: the fields are {', '.join(sorted(known))}"
            )
    return form


def _parse(content_type: str, body: bytes) -> Form:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        return _multipart(content_type, body)
    if media == "application/x-www-form-urlencoded":
        try:
            pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                           errors="strict")
        except UnicodeDecodeError:
            raise InvalidArgument("the URL-encoded form is not valid UTF-8") from None
        return Form(fields=dict(pairs))
    if media in ("application/json", ""):
        return _json(body)
    raise InvalidArgument(
        f"content type {media!r} is not accepted: send multipart/form-data, a URL-encoded "
        "form or JSON"
    )


def _multipart(content_type: str, body: bytes) -> Form:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        raise InvalidArgument("the multipart/form-data body cannot be parsed")
    form = Form()
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            form.files[name] = payload
        else:
            try:
                form.fields[name] = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidArgument(f"the field {name[:40]!r} is not valid UTF-8") from None
    return form


def _json(body: bytes) -> Form:
    data = json_object(body or b"{}")
    form = Form()
    for name, value in data.items():
        if value is None:
            continue  # null: not given
        if name in ("reference_audio", "audio"):
            try:
                form.files[name] = base64.b64decode(str(value), validate=True)
            except ValueError:  # binascii.Error, or characters beyond ASCII ("é")
                raise InvalidArgument(f"{name} is not base64") from None
        elif isinstance(value, bool):
            form.fields[name] = "true" if value else "false"
        elif isinstance(value, (list, dict)):  # a form field holds one value
            raise InvalidArgument(f"{name} must be a string, a number or a boolean, "
                                  f"not a JSON {'array' if isinstance(value, list) else 'object'}")
        else:
            form.fields[name] = str(value)
    return form


def conversion_params(form: Form) -> Conversion:
    """The RVC fields of a legacy form; absent ones stay unset (see ``with_old_defaults``)."""
    values: dict = {"model": form.text("model").strip()}
    method = form.text("f0_method").strip().lower()
    if method:
        if method not in F0_METHODS:
            raise InvalidArgument(
                f"f0_method {method[:40]!r} is unknown: use one of {sorted(F0_METHODS)}"
            )
        values["f0_method"] = F0_METHODS[method]
    for name, kind in (("pitch_shift", int), ("index_rate", float), ("filter_radius", int),
                       ("rms_mix_rate", float), ("protect", float), ("resample_sr", int)):
        value = form.number(name, kind)
        if value is not None:
            values[name] = value
    params = Conversion(**values)
    conversion_to_proto(params)  # a number beyond its field's type is refused now, not after TTS
    return params


def with_old_defaults(params: Conversion) -> Conversion:
    """``params`` (the request's over the profile's) with the old server's defaults where unset."""
    return overlay(OLD_DEFAULTS, params)


def _profile_conversion(form: Form, voices: VoiceBook) -> tuple[Conversion, bool]:
    """The request's RVC fields over the named (or default) voice's, and whether it skips RVC."""
    params = conversion_params(form)
    name = form.text("voice").strip()
    try:
        resolved = voices.resolve(name, Speaker(), Sampling(), params, False)
    except ServiceError:
        if name:
            raise
        # An unusable default profile leaves the choice of voice to the RVC service.
        return params, False
    return resolved.conversion, resolved.skip_rvc


def rvc_params(form: Form, voices: VoiceBook) -> Conversion:
    """The parameters of ``POST /rvc``: the request's, over the named (or default) voice's.

    Without a model the old server converted with its one loaded voice; here that
    is the default profile's RVC voice, else the RVC service's default (RVC_MODEL).
    """
    return with_old_defaults(_profile_conversion(form, voices)[0])


def response_format(form: Form) -> str:
    """The container of the answer: the old server's WAV unless ``response_format`` asks."""
    return parse_format(form.text("response_format", "wav").strip() or "wav")


def job(form: Form, voices: VoiceBook, max_reference_seconds: float | None = None) -> SpeechJob:
    """``text`` in the voice of ``reference_audio`` (transcript ``reference_text``).

    Beyond the old fields, all optional: ``voice`` names a profile (then no
    clip is needed; with a default profile configured, text alone speaks),
    ``seed`` makes the sampling reproducible, ``sample_rate`` resamples the answer.
    """
    reference = form.audio("reference_audio", required=False, max_seconds=max_reference_seconds,
                           limit="TTS_MAX_REFERENCE_SECONDS")
    seed = form.number("seed", int)
    if seed is not None:
        check_seed(seed)
    speaker = Speaker()
    if reference is not None:
        speaker = Speaker(reference=Reference(reference, form.text("reference_text")))
    elif not form.text("voice").strip() and not voices.default:
        raise InvalidArgument("the file reference_audio is required (or name a voice)")
    conversion = conversion_params(form)
    if reference is not None and not form.text("voice").strip():
        # The old server converted every clip's speech with its one loaded voice; the
        # clip names the speaker only (so build_job applies no profile), and the default
        # profile still picks the RVC voice (as for POST /rvc) unless it speaks unconverted.
        profile_conversion, profile_skips = _profile_conversion(form, voices)
        if not profile_skips:
            conversion = profile_conversion
    spoken = build_job(
        voices,
        form.text("voice"),
        form.text("text"),
        speaker=speaker,
        sampling=Sampling(seed=seed),
        conversion=conversion,
        skip_rvc=form.flag("skip_rvc"),
        sample_rate=form.number("sample_rate", int, 0),
    )
    # Request > profile > the old server's defaults.
    return replace(spoken, conversion=with_old_defaults(spoken.conversion))
