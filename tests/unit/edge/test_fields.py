"""The field tables the edge's unknown-field filter checks REST bodies against.

What the Lua does with them, through a real Envoy: tests/integration/test_unknown_fields.py.
"""

import re

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, struct_pb2
from voice.v1 import gateway_pb2

from edge.errors import GRPC_CONTENT_TYPE, IS_GRPC_LUA, not_grpc_header
from edge.fields import (
    body_routes,
    fields_lua,
    json_routes,
    message_fields,
    query_routes,
    transcoded_paths,
)

GATEWAY = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"]


def test_the_routes_are_those_with_a_json_message_body():
    routes = {path: message.full_name for path, message in json_routes(GATEWAY).items()}
    # Not the google.api.HttpBody routes (the old API, OpenAI's), nor the GETs.
    assert routes == {
        "/v1/synthesize": "voice.v1.SynthesizeRequest",
        "/v1/synthesize:stream": "voice.v1.SynthesizeRequest",
        "/v1/tts": "voice.v1.SynthesizeSpeechRequest",
        "/v1/rvc": "voice.v1.ConvertRequest",
        "/v1/voices": "voice.v1.VoiceSpec",
    }


def test_each_field_is_known_by_its_proto_and_json_names_and_nested_messages_are_followed():
    messages = message_fields(list(json_routes(GATEWAY).values()))
    request = messages["voice.v1.SynthesizeRequest"]
    assert request["skip_rvc"] == request["skipRvc"] == ""
    assert request["speaker"] == "voice.v1.SpeakerPrompt"
    assert messages["voice.v1.SpeakerPrompt"]["reference"] == "voice.v1.ReferenceAudio"
    assert messages["voice.v1.ReferenceAudio"]["audio"] == "voice.v1.Audio"
    assert set(messages["voice.v1.ConversionParams"]) >= {"pitch_shift", "pitchShift", "f0_method"}
    assert "skip_rcv" not in request


def test_maps_and_well_known_types_take_any_keys():
    file = descriptor_pb2.FileDescriptorProto(
        name="t.proto", package="t", syntax="proto3", dependency=["google/protobuf/struct.proto"])
    message = file.message_type.add(name="M")
    entry = message.nested_type.add(name="TagsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=9, label=1)
    entry.field.add(name="value", number=2, type=11, label=1, type_name=".t.M")
    message.field.add(name="tags", number=1, type=11, label=3, type_name=".t.M.TagsEntry")
    message.field.add(name="extra", number=2, type=11, label=1,
                      type_name=".google.protobuf.Struct")
    message.field.add(name="child", number=3, type=11, label=1, type_name=".t.M")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(
        struct_pb2.DESCRIPTOR.serialized_pb))
    pool.Add(file)

    fields = message_fields([pool.FindMessageTypeByName("t.M")])

    assert fields == {"t.M": {"tags": "", "extra": "", "child": "t.M"}}


def test_the_lua_source_carries_the_tables():
    source = fields_lua(GATEWAY)
    assert source.startswith('local ROUTES = {["/v1/rvc"] = "voice.v1.ConvertRequest", ')
    assert '["voice.v1.SynthesizeRequest"] = {["conversion"] = "voice.v1.ConversionParams", ' in source
    assert "function envoy_on_request" in source and "envoy_on_response" not in source


def test_each_json_path_has_a_route_whose_buffer_takes_the_largest_body():
    action = {"cluster": "gateway"}
    routes = [r for r in body_routes(action, 1234, GATEWAY) if "path" in r["match"]]

    # Each path, and with a trailing slash where the transcoder maps that too.
    assert [route["match"]["path"] for route in routes] == [
        "/v1/rvc", "/v1/rvc/", "/v1/synthesize", "/v1/synthesize/", "/v1/synthesize:stream",
        "/v1/tts", "/v1/tts/", "/v1/voices", "/v1/voices/"]
    for route in routes:
        assert route["request_body_buffer_limit"] == 1234 and route["route"] is action
        method, content_type = route["match"]["headers"]
        # REST POSTs only: gRPC calls to such a path still get the 404.
        assert method["string_match"] == {"exact": "POST"}
        assert content_type == not_grpc_header()


def test_a_put_to_a_path_template_has_a_route_whose_buffer_takes_the_largest_body():
    action = {"cluster": "gateway"}
    puts = [r for r in body_routes(action, 1234, GATEWAY) if "safe_regex" in r["match"]]
    assert [r["match"]["safe_regex"]["regex"] for r in puts] == ["/v1/voices/[^/]+/?"]
    (put,) = puts
    assert put["request_body_buffer_limit"] == 1234 and put["route"] is action
    method, content_type = put["match"]["headers"]
    assert method["string_match"] == {"exact": "PUT"} and content_type == not_grpc_header()
    regex = re.compile(put["match"]["safe_regex"]["regex"])
    assert regex.fullmatch("/v1/voices/ada") and regex.fullmatch("/v1/voices/a.b-c/")
    assert not regex.fullmatch("/v1/voices/") and not regex.fullmatch("/v1/voices/a/b")


def test_a_custom_verb_takes_no_trailing_slash():
    """The transcoder maps /v1/synthesize/ to Synthesize but /v1/synthesize:stream/ to
    nothing: a route for it would send the request on untranscoded."""
    assert transcoded_paths("/v1/synthesize") == ("/v1/synthesize", "/v1/synthesize/")
    assert transcoded_paths("/v1/synthesize:stream") == ("/v1/synthesize:stream",)
    assert transcoded_paths("/a:b/c") == ("/a:b/c", "/a:b/c/")


def test_rest_is_what_the_transcoder_takes_for_rest():
    """gRPC is application/grpc or application/grpc+... (Envoy's test); the transcoder
    transcodes application/grpc-web, so the filter must check its fields too."""
    grpc = re.compile(GRPC_CONTENT_TYPE)
    for kind in ("application/grpc", "application/grpc+proto", "application/grpc+json"):
        assert grpc.fullmatch(kind), kind
    for kind in ("application/grpc-web", "application/grpc-web+proto", "application/grpcx",
                 "application/json", "", "application/grpc; charset=utf-8"):
        assert not grpc.fullmatch(kind), kind
    source = fields_lua(GATEWAY)
    # edge.errors' test, shared with the other filters that tell gRPC from REST.
    assert IS_GRPC_LUA in source and 'if is_grpc(headers:get("content-type")) then' in source
    assert 'content_type == "application/grpc"' in IS_GRPC_LUA
    assert 'content_type:sub(1, 17) == "application/grpc+"' in IS_GRPC_LUA
    # A trailing slash is the path without it, as the transcoder has it.
    assert '["/v1/synthesize/"] = "voice.v1.SynthesizeRequest"' in source
    assert '["/v1/synthesize:stream/"]' not in source


def test_query_parameters_are_checked_on_every_rest_route():
    """Each REST binding (GETs too, with a trailing slash where the transcoder maps one)
    names the message its query parameters bind; the google.api.HttpBody routes bind
    none (their body is the whole message), so all their parameters are ignored."""
    routes = {key: message.full_name for key, message in query_routes(GATEWAY).items()}
    assert routes["GET /v1/voices"] == routes["GET /v1/voices/"] == "voice.v1.ListVoicesRequest"
    assert routes["GET /health"] == routes["GET /v1/health"] == "voice.v1.GetHealthRequest"
    assert routes["POST /v1/synthesize"] == routes["POST /v1/synthesize:stream"] == (
        "voice.v1.SynthesizeRequest")
    assert "POST /v1/synthesize:stream/" not in routes
    assert "POST /tts" not in routes and "POST /v1/audio/speech" not in routes
    assert "google.api.HttpBody" not in routes.values()
    # Every other binding of the protos, each method's own message.
    bindings = set()
    for method in GATEWAY.methods:
        if method.input_type.full_name == "google.api.HttpBody":
            continue
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        for binding in (rule, *rule.additional_bindings):
            verb = binding.WhichOneof("pattern")
            bindings.add(f"{verb.upper()} {getattr(binding, verb)}")
            assert routes[f"{verb.upper()} {getattr(binding, verb)}"] == method.input_type.full_name
    assert {key.rstrip("/") for key in routes} == bindings


def test_the_lua_source_knows_the_fields_each_query_can_name():
    source = fields_lua(GATEWAY)
    assert "\nlocal QUERY_ROUTES = {" in source
    assert '["GET /config"] = "voice.v1.GetLegacyConfigRequest", ' in source
    assert '["GET /v1/voices"] = "voice.v1.ListVoicesRequest"' in source
    # The GET routes' messages are in MESSAGES too.
    assert '["voice.v1.ListVoicesRequest"] = {' in source
    assert "google.api.HttpBody" not in source
    # A parameter is checked only where it names a field: the rest are ignored.
    check = source.split("local function check_query")[1].split("\nend\n")[0]
    assert "names_a_field(message, name)" in check
    assert "malformed percent-encoding" in check and "not UTF-8" in check
