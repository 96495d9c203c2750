"""The import graph of the repository's own packages, read by grimp (the graph
behind import-linter): no module imports itself back through others, type-only
imports included, and the services share code only through services.common."""

from __future__ import annotations

import copy

import grimp
import pytest

PACKAGES = ("services", "edge", "localstack", "bench")
SERVICES = ("gateway", "tts_gateway", "rvc")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=False, cache_dir=None)


def cycles(graph: grimp.ImportGraph, package: str) -> list[tuple[str, ...]]:
    """One shortest import chain back to itself per module of ``package`` in a cycle."""
    found = []
    for module in sorted(graph.find_descendants(package)):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain is not None:
                found.append((module, *chain))
                break
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(graph, package):
    assert cycles(graph, package) == []


def test_a_cycle_is_found_where_there_is_one(graph):
    """The check itself: an import added from the gateway's stages back to its
    pipeline (which imports the stages) closes a cycle the check reports."""
    graph = copy.deepcopy(graph)
    graph.add_import(importer="services.gateway.stages", imported="services.gateway.pipeline")
    assert any(chain[0] in ("services.gateway.stages", "services.gateway.pipeline")
               for chain in cycles(graph, "services"))


# (importer, imported) that must stay apart: the Envoy edge's configuration (edge/) is
# no part of the gateway process, and the local stack renders it without the gateway's
# code; in the local runner, supervision knows nothing of the process table or of what
# the processes run on, and preparing the models starts no process.
APART = (
    ("edge", "services.gateway"),
    ("services.gateway", "edge"),
    ("localstack", "services.gateway"),
    ("localstack.supervise", "localstack.components"),
    ("localstack.supervise", "localstack.prepare"),
    ("localstack.supervise", "localstack.config"),
    ("localstack.prepare", "localstack.supervise"),
    ("localstack.prepare", "localstack.components"),
    ("services", "localstack"),
)


@pytest.mark.parametrize(("importer", "imported"), APART)
def test_these_packages_stay_apart(graph, importer, imported):
    assert not graph.chain_exists(importer=importer, imported=imported, as_packages=True), (
        f"{importer} imports {imported}")


def test_the_local_stack_renders_the_edge(graph):
    assert graph.chain_exists(importer="localstack.components", imported="edge.render")


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service(graph, service):
    others = [f"services.{other}" for other in SERVICES if other != service]
    for other in others:
        assert not graph.chain_exists(importer=f"services.{service}", imported=other,
                                      as_packages=True), f"services.{service} imports {other}"


# The gateway's protocol adapters, with the request parsers each owns.
ADAPTERS = {
    "services.gateway.adapters.grpc_api": (),
    "services.gateway.adapters.legacy_api": ("services.gateway.legacy_http",),
    "services.gateway.adapters.openai_api": ("services.gateway.openai_speech",),
}


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_no_gateway_adapter_imports_another_or_its_parsers(graph, adapter):
    for other, parsers in ADAPTERS.items():
        if other != adapter:
            for module in (other, *parsers):
                assert not graph.chain_exists(importer=adapter, imported=module), (adapter, module)


def test_the_gateway_core_imports_no_adapter(graph):
    for adapter in ADAPTERS:
        assert not graph.chain_exists(importer="services.gateway.speech", imported=adapter)
    assert not graph.chain_exists(importer="services.gateway.speech",
                                  imported="services.gateway.adapters", as_packages=True)


# The gateway's core: the modules that decide what a request becomes. They work on
# services.gateway.speech_params; protos stay in the adapters, params_proto and the
# stage clients (and in speech.py, which relays the stages' own Tts, Rvc and status
# messages unread).
GATEWAY_CORE = ("speech_params", "jobs", "voices", "voice_profiles", "pipeline", "results",
                "sentences", "tempo")


@pytest.fixture(scope="module")
def graph_with_externals() -> grimp.ImportGraph:
    return grimp.build_graph("services", include_external_packages=True, cache_dir=None)


@pytest.mark.parametrize("module", GATEWAY_CORE)
def test_the_gateway_core_imports_no_protos(graph_with_externals, module):
    imported = graph_with_externals.find_modules_directly_imported_by(f"services.gateway.{module}")
    protos = {name for name in imported if name.split(".")[0] in ("voice", "google")}
    assert not protos, f"services.gateway.{module} imports {sorted(protos)}"


def test_the_proto_check_sees_an_import_of_voice(graph_with_externals):
    imported = graph_with_externals.find_modules_directly_imported_by("services.gateway.stages")
    assert "voice" in {name.split(".")[0] for name in imported}
