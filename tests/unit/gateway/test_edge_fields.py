"""The field tables the edge's unknown-field filter checks REST bodies against.

What the Lua does with them, through a real Envoy: tests/integration/test_unknown_fields.py.
"""

from google.protobuf import descriptor_pb2, descriptor_pool, struct_pb2
from voice.v1 import gateway_pb2

from services.gateway.edge_fields import body_routes, fields_lua, json_routes, message_fields

GATEWAY = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"]


def test_the_routes_are_those_with_a_json_message_body():
    routes = {path: message.full_name for path, message in json_routes(GATEWAY).items()}
    # Not the google.api.HttpBody routes (the old API, OpenAI's), nor the GETs.
    assert routes == {
        "/v1/synthesize": "voice.v1.SynthesizeRequest",
        "/v1/synthesize:stream": "voice.v1.SynthesizeRequest",
        "/v1/tts": "voice.v1.SynthesizeSpeechRequest",
        "/v1/rvc": "voice.v1.ConvertRequest",
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
    routes = body_routes(action, 1234, GATEWAY)

    assert [route["match"]["path"] for route in routes] == sorted(json_routes(GATEWAY))
    for route in routes:
        assert route["request_body_buffer_limit"] == 1234 and route["route"] is action
        method, content_type = route["match"]["headers"]
        # REST POSTs only: gRPC calls to such a path still get the 404.
        assert method["string_match"] == {"exact": "POST"}
        assert content_type["invert_match"] and content_type["string_match"] == {
            "prefix": "application/grpc"}
