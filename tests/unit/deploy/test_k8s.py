"""k8s/: every kustomization renders, validates against the Kubernetes and CRD
schemas, passes checkov, and keeps the promises of docs/deploy.md.

No cluster is needed. Tools: kubectl (kustomize), the kubernetes-validate
package, the prometheus-operator CRD schemas (bash tools/fetch_crd_schemas.sh)
and checkov (in .venv-tools, or CHECKOV=path). A missing tool skips its tests
here and fails them in CI (CI=true), where .ci/run installs them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import typing
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from edge import k8s as edge_k8s
from tests.processes import stop

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "k8s"
REPO_WEB = REPO / "web"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
JOBS = sorted(p.parent.relative_to(K8S).as_posix() for p in (K8S / "jobs").glob("*/kustomization.yaml"))
TARGETS = [f"overlays/{name}" for name in OVERLAYS] + JOBS
NAMESPACE = "voice"
# The oldest Kubernetes the manifests are for (native gRPC probes, preStop sleep).
K8S_VERSION = "1.30"
CRD_PACKAGE = REPO / "tools" / ".cache" / "crd-schemas" / "prometheus-operator-4.0.0"
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# The components: Deployment name -> (container, settings class, variable prefix).
SERVICES = {
    "gateway": ("gateway", "services.gateway.settings:GatewaySettings", "GATEWAY"),
    "tts-gateway": ("tts-gateway", "services.tts_gateway.settings:TtsSettings", "TTS"),
    "rvc": ("rvc", "services.rvc.settings:RvcSettings", "RVC"),
}
COMPONENTS = ("edge", "gateway", "tts-gateway", "rvc", "triton")
# Process environment, not settings of ours.
PROCESS_ENV = {
    "POD_NAMESPACE", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "HOME",
    "NUMBA_CACHE_DIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "HF_TOKEN_PATH",
}


def _missing(what: str, how: str) -> None:
    if CI:
        pytest.fail(f"missing in CI: {what} ({how})")
    pytest.skip(f"missing: {what} ({how})")


# -- rendering ----------------------------------------------------------------


@functools.cache
def _kustomize(target: str) -> tuple[dict, ...] | str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return "kubectl (with kustomize) is not on PATH"
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S / target)], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize k8s/{target} failed:\n{done.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def render(target: str) -> tuple[dict, ...]:
    result = _kustomize(target)
    if isinstance(result, str):
        _missing("kubectl", result)
    return result


def of_kind(objects, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def all_containers(workload: dict) -> list[dict]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def container(workload: dict, name: str) -> dict:
    (found,) = [c for c in pod_spec(workload)["containers"] if c["name"] == name]
    return found


def env_of(c: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def workloads(objects) -> dict[str, dict]:
    return {**of_kind(objects, "Deployment"), **of_kind(objects, "Job")}


def selects(selector: dict, labels: dict) -> bool:
    """Whether a LabelSelector (matchLabels / matchExpressions with In) matches labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] in ("In", "Exists"), expr
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
        if expr["operator"] == "Exists" and expr["key"] not in labels:
            return False
    return True


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"]["labels"]


@pytest.fixture(params=TARGETS)
def target(request) -> str:
    return request.param


@pytest.fixture(params=OVERLAYS)
def overlay(request) -> tuple[dict, ...]:
    return render(f"overlays/{request.param}")


def test_there_are_gpu_and_cpu_overlays():
    assert {"gpu", "cpu"} <= set(OVERLAYS)
    assert "jobs/models-download" in JOBS


def test_renders_into_the_namespace(target):
    objects = render(target)
    assert objects
    seen = set()
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in seen, f"{key} twice"
        seen.add(key)
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, key
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "voice-pipeline", key


# -- schemas ------------------------------------------------------------------


def _kubernetes_validate():
    try:
        import kubernetes_validate
    except ImportError:
        _missing("kubernetes-validate", "pip install kubernetes-validate (the dev extra)")
    return kubernetes_validate


def _builtin_errors(objects) -> tuple[list[str], list[dict]]:
    """Strict schema errors of built-in objects, and the objects no built-in schema knows."""
    kv = _kubernetes_validate()
    errors, custom = [], []
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kv.validate(obj, K8S_VERSION, strict=True)
        except kv.SchemaNotFoundError:
            custom.append(obj)
        except kv.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{name}: {path}: {exc.message}")
    return errors, custom


def test_builtin_objects_validate_strictly(target):
    errors, _ = _builtin_errors(render(target))
    assert not errors, "\n".join(errors)


def test_strict_validation_rejects_unknown_fields():
    deployment = of_kind(render("overlays/cpu"), "Deployment")["rvc"]
    broken = json.loads(json.dumps(deployment))
    pod_spec(broken)["containers"][0]["resource"] = {}
    errors, _ = _builtin_errors([broken])
    assert errors and "resource" in errors[0]


CRD_GROUP = "monitoring.coreos.com"
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def _openapi_to_strict_jsonschema(node):
    """A CRD's structural OpenAPI v3 schema as a JSON Schema that, like the API
    server's strict field validation, rejects unknown fields; nullable -> null."""
    if isinstance(node, list):
        return [_openapi_to_strict_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_to_strict_jsonschema(v) for k, v in node.items() if k != "nullable"}
    if out.get("$ref", "").startswith(_OBJECT_META):
        return {"$ref": f"https://kubernetes.io/api/_definitions.json#/$defs/{_OBJECT_META}"}
    if (
        out.get("properties")
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


@functools.cache
def _crd_validator(group_version: str, kind: str):
    """A jsonschema validator for a prometheus-operator kind, from the npm package's
    copy of the CRD's openAPIV3Schema (bash tools/fetch_crd_schemas.sh)."""
    import jsonschema
    from referencing import Registry, Resource

    kv = _kubernetes_validate()
    group, version = group_version.split("/")
    source = CRD_PACKAGE / group / version / f"{kind}.js"
    if not source.exists():
        raise LookupError(f"no schema for {group_version} {kind} in {CRD_PACKAGE}")
    text = source.read_text()
    start = text.index("const schema = ") + len("const schema = ")
    end = text.index("\n};\n", start) + 2
    schema = _openapi_to_strict_jsonschema(json.loads(text[start:end]))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    definitions = Path(kv.__file__).parent / "kubernetes-json-schema"
    version_dir = f"v{K8S_VERSION}.0-local-strict"
    defs = json.loads((definitions / version_dir / "_definitions.json").read_text())
    registry = Registry().with_resource(defs["$id"], Resource.from_contents(defs))
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _custom_errors(objects) -> list[str]:
    if not objects:
        return []
    if not CRD_PACKAGE.exists():
        _missing("the prometheus-operator CRD schemas", "bash tools/fetch_crd_schemas.sh")
    errors = []
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if not obj["apiVersion"].startswith(CRD_GROUP + "/"):
            errors.append(f"{name}: {obj['apiVersion']} has no schema here: add its CRD's")
            continue
        for error in _crd_validator(obj["apiVersion"], obj["kind"]).iter_errors(obj):
            path = ".".join(str(p) for p in error.path)
            errors.append(f"{name}: {path}: {error.message}")
    return errors


def test_custom_resources_validate_against_their_crds(target):
    _, custom = _builtin_errors(render(target))
    errors = _custom_errors(custom)
    assert not errors, "\n".join(errors)


def test_crd_validation_is_strict():
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "x", "namespace": NAMESPACE, "labels": {"a": "b"}},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "rvc"}},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics"}],
        },
    }
    assert _custom_errors([monitor]) == []
    monitor["spec"]["podMetricsEndpoints"][0]["prot"] = "metrics"
    monitor["metadata"]["lables"] = {}
    errors = _custom_errors([monitor])
    assert any("prot" in e for e in errors) and any("lables" in e for e in errors), errors


# -- services and traffic -------------------------------------------------------


def test_only_the_edge_service_has_a_cluster_ip(overlay):
    services = of_kind(overlay, "Service")
    assert set(COMPONENTS) <= set(services)
    for name, service in services.items():
        spec = service["spec"]
        if name == "edge":
            assert spec.get("clusterIP") != "None"
            assert spec.get("type", "ClusterIP") in ("ClusterIP", "LoadBalancer", "NodePort")
            assert [p["port"] for p in spec["ports"]] == [8080]
            assert spec["selector"] == {"app.kubernetes.io/name": "edge"}
        else:
            assert spec.get("clusterIP") == "None", f"{name} must be headless"


def _port(workload: dict, container_name: str, port_name: str) -> int:
    (port,) = [
        p["containerPort"]
        for p in container(workload, container_name).get("ports", [])
        if p["name"] == port_name
    ]
    return port


def test_services_point_at_named_container_ports(overlay):
    deployments = of_kind(overlay, "Deployment")
    for name, service in of_kind(overlay, "Service").items():
        (workload,) = [
            d for d in deployments.values()
            if service["spec"]["selector"].items() <= pod_labels(d).items()
        ]
        names = {
            p["name"]: p["containerPort"]
            for c in pod_spec(workload)["containers"] for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert names.get(port["targetPort"]) == port["port"], (name, port)


def _dns_target(value: str) -> tuple[str, int]:
    """dns:///<service>.$(POD_NAMESPACE).svc.cluster.local:<port> -> (service, port)."""
    match = re.fullmatch(r"dns:///([a-z0-9-]+)\.\$\(POD_NAMESPACE\)\.svc\.cluster\.local:(\d+)", value)
    assert match, f"{value!r} is not a dns:/// target of a Service in the pod's namespace"
    return match.group(1), int(match.group(2))


@pytest.mark.parametrize(
    "deployment, variable, service",
    [
        ("gateway", "TTS_TARGET", "tts-gateway"),
        ("gateway", "RVC_TARGET", "rvc"),
        ("tts-gateway", "TRITON_GRPC_URL", "triton"),
    ],
)
def test_grpc_targets_are_headless_dns_names(overlay, deployment, variable, service):
    workload = of_kind(overlay, "Deployment")[deployment]
    (c,) = pod_spec(workload)["containers"]
    env = c["env"]
    (value,) = [e["value"] for e in env if e["name"] == variable]
    name, port = _dns_target(value)
    assert name == service
    # $(POD_NAMESPACE) expands only from a variable defined before it.
    names = [e["name"] for e in env]
    assert names.index("POD_NAMESPACE") < names.index(variable)
    (ns,) = [e for e in env if e["name"] == "POD_NAMESPACE"]
    assert ns["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    target = of_kind(overlay, "Service")[name]
    assert target["spec"]["clusterIP"] == "None"
    assert port in [p["port"] for p in target["spec"]["ports"] if p["name"] == "grpc"]


# -- the code's settings ----------------------------------------------------------


def _settings_class(path: str):
    module, _, name = path.partition(":")
    return getattr(__import__(module, fromlist=[name]), name)


def _setting_variables(cls, prefix: str) -> set[str]:
    """Every variable services.common.settings.from_env reads for ``cls``."""
    hints = typing.get_type_hints(cls)
    names = set()
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            names |= _setting_variables(kind, prefix)
        else:
            names.add(field.metadata.get("env") or f"{prefix}_{field.name}".upper())
    return names


@pytest.mark.parametrize("deployment", sorted(SERVICES))
def test_service_env_is_what_the_code_reads(overlay, deployment, tmp_path):
    from services.common.settings import TLS_VARIABLES, from_env

    container_name, settings_path, prefix = SERVICES[deployment]
    workload = of_kind(overlay, "Deployment")[deployment]
    c = container(workload, container_name)
    assert c["command"] == ["python", "-m", f"services.{deployment.replace('-', '_')}"]
    cls = _settings_class(settings_path)
    env = {
        k: v.replace("$(POD_NAMESPACE)", NAMESPACE) for k, v in env_of(c).items() if v is not None
    }
    unknown = set(env) - _setting_variables(cls, prefix) - PROCESS_ENV
    assert not unknown, f"{deployment}: variables no setting reads: {sorted(unknown)}"
    # Internal mTLS (gpu-mtls): the files come from the pod's Secret; the settings
    # then read stand-ins (they check that each file exists and is PEM).
    secrets = _secret_mounts(workload, c)
    for var in set(TLS_VARIABLES) & set(env):
        path = Path(env[var])
        assert path.parent in secrets, f"{deployment}: {var}={path} is not in a Secret's mount"
        env[var] = str(tmp_path / path.name)
        (tmp_path / path.name).write_text("-----BEGIN STAND-IN-----\n")
    settings = from_env(cls, prefix, env)  # raises on a bad value
    server = settings.server
    assert server.host == "0.0.0.0", "pods must listen on every interface"
    assert server.grpc_port == _port(workload, container_name, "grpc")
    assert server.metrics_port == _port(workload, container_name, "metrics")
    # gRPC health (by the kubelet, or under mTLS by services.common.health_probe in
    # the pod, which shows the pod's certificate) or a TCP connection.
    probe_command = ["python", "-m", "services.common.health_probe", str(server.grpc_port)]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        action = c[probe]
        if "exec" in action:
            assert server.internal_tls.enabled, (deployment, probe)
            assert action["exec"]["command"] == probe_command, (deployment, probe)
            assert action["timeoutSeconds"] >= 5, "a Python process starts in the probe"
            continue
        port = action.get("grpc", action.get("tcpSocket", {})).get("port")
        assert port == server.grpc_port, (deployment, probe)
    readiness = c["readinessProbe"]
    if server.internal_tls.enabled:
        assert readiness["exec"]["command"] == probe_command
    else:
        assert readiness["grpc"]["port"] == server.grpc_port
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == server.metrics_port
    assert annotations["prometheus.io/path"] == "/metrics"


# The gateway decodes uploads under the TTS and RVC services' own limits (it reads
# their variables): variable -> the service's Deployment.
UPLOAD_LIMITS = {"TTS_MAX_REFERENCE_SECONDS": "tts-gateway", "RVC_MAX_AUDIO_SECONDS": "rvc"}


@pytest.mark.parametrize("variable", sorted(UPLOAD_LIMITS))
def test_the_gateway_decodes_uploads_under_the_services_limits(overlay, variable):
    """Set in the gateway's pods as in the service's: a clip the gateway let through
    is not refused further on, and none is refused that the service would take."""
    deployments = of_kind(overlay, "Deployment")
    values = {}
    for name in ("gateway", UPLOAD_LIMITS[variable]):
        env = env_of(container(deployments[name], SERVICES[name][0]))
        assert variable in env, f"the {name} Deployment does not set {variable}"
        values[name] = float(env[variable])
    assert len(set(values.values())) == 1, (variable, values)


def _triton_parameters() -> set[str]:
    keys = set()
    for config in (REPO / "triton" / "model_repo").glob("*/config.pbtxt"):
        keys |= set(re.findall(r'key:\s*"([a-z_]+)"', config.read_text()))
    return {k.upper() for k in keys}


def test_triton_runs_the_repository_with_its_env(overlay):
    from localstack.prepare.model_repo import parse_instances

    workload = of_kind(overlay, "Deployment")["triton"]
    c = container(workload, "triton")
    # The image's entrypoint renders the repository, then runs tritonserver with args.
    assert "command" not in c
    flags = dict(arg.split("=", 1) for arg in c["args"])
    for flag, port in (("--http-port", "http"), ("--grpc-port", "grpc"),
                       ("--metrics-port", "metrics")):
        assert int(flags[flag]) == _port(workload, "triton", port)
    for flag in ("--http-address", "--grpc-address", "--metrics-address"):
        assert flags[flag] == "0.0.0.0"
    grace = pod_spec(workload)["terminationGracePeriodSeconds"]
    assert int(flags["--exit-timeout-secs"]) + c["lifecycle"]["preStop"]["sleep"]["seconds"] < grace
    env = env_of(c)
    spark = {k for k in env if k.startswith("SPARK_TTS_")}
    assert spark <= _triton_parameters(), spark - _triton_parameters()
    triton = {k for k in env if k.startswith("TRITON_")}
    assert triton == {"TRITON_MODEL_REPO", "TRITON_RENDERED_REPO", "TRITON_INSTANCES"}
    assert env["TRITON_MODEL_REPO"] == "/app/triton/model_repo"
    repo_models = {p.parent.name for p in (REPO / "triton" / "model_repo").glob("*/config.pbtxt")}
    assert set(parse_instances(env["TRITON_INSTANCES"])) <= repo_models
    assert env["SPARK_TTS_MODEL_DIR"] == "/models/Spark-TTS-0.5B"
    writable = _writable_mounts(workload, c)
    assert any(env["TRITON_RENDERED_REPO"].startswith(path + "/") for path in writable)
    http = _port(workload, "triton", "http")
    for probe, path in (("readinessProbe", "/v2/health/ready"),
                        ("startupProbe", "/v2/health/ready"),
                        ("livenessProbe", "/v2/health/live")):
        assert c[probe]["httpGet"]["path"] == path
        assert c[probe]["httpGet"]["port"] in ("http", http)
    assert int(workload["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]) \
        == _port(workload, "triton", "metrics")


# -- the vLLM server beside Triton ---------------------------------------------------

VLLM_DOCKERFILE = REPO / "docker" / "vllm.Dockerfile"


def _vllm_entrypoint() -> list[str]:
    """The vllm image's ENTRYPOINT (exec form), which the pods run with their args."""
    entrypoints = re.findall(r"^ENTRYPOINT\s+(\[.*\])\s*$", VLLM_DOCKERFILE.read_text(), re.M)
    return json.loads(entrypoints[-1])


def _expand(value: str, env: dict[str, str]) -> str:
    """$(VAR) as the kubelet expands it in args, from the container's env."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def _cpus(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _llm_server(overlay) -> tuple[dict, dict, dict, bool]:
    """Triton's Deployment, its triton and vllm containers, and whether vLLM is the GPU build."""
    workload = of_kind(overlay, "Deployment")["triton"]
    triton, vllm = container(workload, "triton"), container(workload, "vllm")
    device = env_of(triton)["SPARK_TTS_LLM_DEVICE"]
    assert device in ("cpu", "cuda"), device
    return workload, triton, vllm, device == "cuda"


def test_vllm_runs_beside_triton_in_its_pod(overlay):
    workload, triton, vllm, gpu = _llm_server(overlay)
    # Triton first: the gpu-mtls overlay patches containers/0's args.
    assert [c["name"] for c in pod_spec(workload)["containers"]] == ["triton", "vllm"]
    image, _, tag = vllm["image"].rpartition(":")
    assert image == ("voice-pipeline/vllm-cuda" if gpu else "voice-pipeline/vllm-cpu")
    assert tag == triton["image"].rpartition(":")[2], "one release for both"
    # Triton's llm model reaches it inside the pod, on its port.
    port = _port(workload, "vllm", "vllm-http")
    assert env_of(triton)["SPARK_TTS_LLM_URL"] == f"http://127.0.0.1:{port}"
    assert {"SPARK_TTS_LLM_URL", "SPARK_TTS_LLM_DEVICE"} <= _triton_parameters()


def test_vllm_runs_the_stacks_server_command(overlay):
    """The image's entrypoint with the pod's args is localstack/vllm.py's command
    line for the CPU or the GPU, listening on the pod's addresses (probes, Prometheus)."""
    from localstack.vllm import SERVED_NAME, VllmServer
    from spark_tts.layout import LLM_DIR

    workload, triton, vllm, gpu = _llm_server(overlay)
    env = env_of(vllm)
    assert "command" not in vllm, "the image's entrypoint runs the server"
    argv = _vllm_entrypoint() + [_expand(a, env) for a in vllm["args"]]
    assert "$(" not in " ".join(argv), f"a variable the container does not set: {argv}"
    utilization = "--gpu-memory-utilization"
    fraction = float(argv[argv.index(utilization) + 1]) if utilization in argv else 0.5
    expected = VllmServer(
        python=Path(argv[0]),
        llm_dir=Path(env_of(triton)["SPARK_TTS_MODEL_DIR"]) / LLM_DIR,
        host="0.0.0.0",
        port=_port(workload, "vllm", "vllm-http"),
        gpu=gpu,
        cpu_kv_cache_gib=int(env.get("VLLM_CPU_KVCACHE_SPACE", 1)),
        gpu_memory_utilization=fraction,
        cpu_threads=int(env.get("OMP_NUM_THREADS", 1)),
    )
    assert argv == expected.argv()
    # What the llm model relies on, spelled out.
    assert argv[argv.index("--served-model-name") + 1] == SERVED_NAME == "spark-llm"
    assert "--enable-prefix-caching" in argv
    assert int(argv[argv.index("--port") + 1]) == 8003
    assert ("--gpu-memory-utilization" in argv) == gpu
    assert ("--enforce-eager" in argv) == (not gpu)
    if gpu:  # set in the overlay, through the container's env
        raw = vllm["args"][vllm["args"].index("--gpu-memory-utilization") + 1]
        assert raw == "$(GPU_MEMORY_UTILIZATION)"
        assert 0 < float(env["GPU_MEMORY_UTILIZATION"]) < 1


def test_vllm_env_is_the_servers(overlay):
    from localstack.vllm import VllmServer

    _, _, vllm, gpu = _llm_server(overlay)
    env = env_of(vllm)
    server = VllmServer(
        python=Path("python"), llm_dir=Path("/m"), host="0.0.0.0", port=8003, gpu=gpu,
        cpu_kv_cache_gib=int(env.get("VLLM_CPU_KVCACHE_SPACE", 1)),
        cpu_threads=int(env.get("OMP_NUM_THREADS", 1)),
    )
    expected = server.env(base={})
    # In a container the CPU limit is a CFS quota, not a cpuset: vLLM's "auto"
    # binding would start a thread per core of the node's NUMA node. No binding
    # (as in the local stack), and as many threads as the container's CPU limit.
    if not gpu:
        assert expected["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
        assert int(env["OMP_NUM_THREADS"]) == _cpus(vllm["resources"]["limits"]["cpu"])
        # vLLM reads it as an integer (GiB).
        assert env["VLLM_CPU_KVCACHE_SPACE"].isdigit()
    for name, value in expected.items():
        assert env.get(name) == value, (name, env.get(name), value)
    # vLLM warns about VLLM_ variables it does not know; CPU ones on a GPU are wrong.
    assert {k for k in env if k.startswith("VLLM_")} == {k for k in expected if k.startswith("VLLM_")}
    assert env["HOME"] == "/tmp"


def test_vllm_is_probed_on_health_and_outlives_tritons_drain(overlay):
    workload, triton, vllm, _ = _llm_server(overlay)
    port = _port(workload, "vllm", "vllm-http")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert vllm[probe]["httpGet"]["path"] == "/health", probe
        assert vllm[probe]["httpGet"]["port"] in ("vllm-http", port), probe
    startup = vllm["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, "minutes to load"
    # Requests in flight in Triton stream from vLLM: it stops after Triton has drained.
    flags = dict(arg.split("=", 1) for arg in triton["args"] if "=" in arg)
    triton_done = (triton["lifecycle"]["preStop"]["sleep"]["seconds"]
                   + int(flags["--exit-timeout-secs"]))
    vllm_stop = vllm["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert triton_done <= vllm_stop < pod_spec(workload)["terminationGracePeriodSeconds"]


def test_vllm_port_is_in_no_service(overlay):
    workload, _, _, _ = _llm_server(overlay)
    port = _port(workload, "vllm", "vllm-http")
    for name, service in of_kind(overlay, "Service").items():
        for p in service["spec"]["ports"]:
            assert p["targetPort"] not in ("vllm-http", port) and p["port"] != port, (name, p)


def test_prometheus_scrapes_vllm(overlay):
    workload, _, vllm, _ = _llm_server(overlay)
    monitors = [
        m for m in of_kind(overlay, "PodMonitor").values()
        if selects(m["spec"]["selector"], pod_labels(workload))
        and any(e["port"] == "vllm-http" for e in m["spec"]["podMetricsEndpoints"])
    ]
    (monitor,) = monitors
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    assert "vllm-http" in [p["name"] for p in vllm["ports"]]
    # Its own job: up{job="triton"} stays tritonserver's alone.
    assert "jobLabel" not in monitor["spec"]
    assert {"action": "replace", "targetLabel": "job", "replacement": "vllm"} \
        in endpoint["relabelings"]
    # The NetworkPolicy lets Prometheus in (test_network_policies_allow_exactly_the_request_path).
    assert _port(workload, "vllm", "vllm-http") in METRICS_PORTS["triton"]


# -- pods: security, probes, resources, rollout -----------------------------------


def test_every_container_is_locked_down(target):
    for name, workload in workloads(render(target)).items():
        spec = pod_spec(workload)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] >= 10000 and pod["fsGroup"] >= 10000, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec.get("serviceAccountName", "default") == name, name
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(field), (name, field)
        for c in all_containers(workload):
            sc = c["securityContext"]
            where = f"{name}/{c['name']}"
            assert sc.get("runAsNonRoot", pod["runAsNonRoot"]) is True, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert not sc.get("privileged"), where
            assert c["image"].startswith("voice-pipeline/"), where
            image_tag = c["image"].rpartition(":")[2] if ":" in c["image"] else ""
            assert image_tag and image_tag != "latest", f"{where}: set the tag via images:"


def test_service_accounts_mount_no_token(overlay):
    accounts = of_kind(overlay, "ServiceAccount")
    for workload in of_kind(overlay, "Deployment").values():
        assert accounts[pod_spec(workload)["serviceAccountName"]][
            "automountServiceAccountToken"] is False
    assert accounts["models-download"]["automountServiceAccountToken"] is False


def _writable_mounts(workload: dict, c: dict) -> dict[str, dict]:
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    return {
        m["mountPath"]: volumes[m["name"]]
        for m in c.get("volumeMounts", []) if not m.get("readOnly")
    }


def _secret_mounts(workload: dict, c: dict) -> dict[Path, str]:
    """Read-only mounts of Secrets: mount path -> Secret name."""
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    return {
        Path(m["mountPath"]): volumes[m["name"]]["secret"]["secretName"]
        for m in c.get("volumeMounts", [])
        if m.get("readOnly") and "secret" in volumes[m["name"]]
    }


def test_writable_paths_are_volumes(target):
    for name, workload in workloads(render(target)).items():
        for c in all_containers(workload):
            mounts = _writable_mounts(workload, c)
            assert "/tmp" in mounts and "emptyDir" in mounts["/tmp"], (name, c["name"])
            for var, value in env_of(c).items():
                if var in ("HOME", "NUMBA_CACHE_DIR", "HF_HOME", "SPARK_TTS_CANCEL_DIR",
                           "TRITON_RENDERED_REPO"):
                    assert any(value == p or value.startswith(p + "/") for p in mounts), \
                        f"{name}/{c['name']}: {var}={value} is on the read-only root"
    objects = render(target)
    for name, container_name in (("rvc", "rvc"), ("triton", "triton"), ("triton", "vllm")):
        if name in of_kind(objects, "Deployment"):
            workload = of_kind(objects, "Deployment")[name]
            shm = _writable_mounts(workload, container(workload, container_name))["/dev/shm"]
            assert shm["emptyDir"]["medium"] == "Memory"


def test_deployments_probe_limit_spread_and_drain(overlay):
    deployments = of_kind(overlay, "Deployment")
    assert set(deployments) == set(COMPONENTS)
    for name, workload in deployments.items():
        spec = workload["spec"]
        assert spec["strategy"]["type"] == "RollingUpdate"
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, name
        pod = pod_spec(workload)
        spreads = pod["topologySpreadConstraints"]
        assert {s["topologyKey"] for s in spreads} >= {"kubernetes.io/hostname"}
        for spread in spreads:
            assert selects(spread["labelSelector"], pod_labels(workload)), name
        grace = pod["terminationGracePeriodSeconds"]
        for c in pod["containers"]:
            where = f"{name}/{c['name']}"
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in c, f"{where}: no {probe}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{where}: {kind}"
            pre_stop = c["lifecycle"]["preStop"]
            drain = [float(v) for k, v in env_of(c).items() if k.endswith("_DRAIN_SECONDS")]
            if "sleep" in pre_stop:
                needed = pre_stop["sleep"]["seconds"] + sum(drain)
                assert grace > needed, f"{where}: grace {grace}s < preStop + drain {needed}s"
            else:  # Envoy: sleeps, drains, sleeps (python in the gateway image)
                waits = re.findall(r"time\.sleep\((\d+)\)", pre_stop["exec"]["command"][-1])
                assert grace > sum(int(w) for w in waits), where
        assert selects(spec["selector"], pod_labels(workload))
        assert spec["selector"] == {"matchLabels": {"app.kubernetes.io/name": name}}


def test_edge_drains_envoy_through_loopback_admin(overlay):
    envoy = container(of_kind(overlay, "Deployment")["edge"], "envoy")
    script = envoy["lifecycle"]["preStop"]["exec"]["command"][-1]
    assert "http://127.0.0.1:9901" in script
    assert '"/healthcheck/fail"' in script and '"/drain_listeners?graceful"' in script
    assert envoy["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "envoy-metrics"}
    assert [p["containerPort"] for p in envoy["ports"]] == [8080, 9902]


def test_disruption_budgets_and_autoscalers(overlay):
    deployments = of_kind(overlay, "Deployment")
    budgets = of_kind(overlay, "PodDisruptionBudget")
    for name, workload in deployments.items():
        matching = [b for b in budgets.values() if selects(b["spec"]["selector"], pod_labels(workload))]
        assert len(matching) == 1, f"{name}: {len(matching)} PodDisruptionBudgets"
        assert matching[0]["spec"].get("maxUnavailable") == 1
    hpas = of_kind(overlay, "HorizontalPodAutoscaler")
    expected = {"rvc": "rvc_queue_depth", "tts-gateway": "tts_in_flight_requests"}
    assert set(hpas) == set(expected)
    for name, metric in expected.items():
        hpa = hpas[name]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        kinds = {m["type"]: m for m in hpa["spec"]["metrics"]}
        assert kinds["Pods"]["pods"]["metric"]["name"] == metric
        assert kinds["Pods"]["pods"]["target"]["type"] == "AverageValue"
        assert kinds["Resource"]["resource"]["name"] == "cpu"
        # The autoscaler owns the replica count.
        assert "replicas" not in deployments[name]["spec"], name


# -- GPU and CPU ------------------------------------------------------------------


def _gpus(c: dict) -> tuple[object, object]:
    resources = c.get("resources", {})
    return (resources.get("requests", {}).get("nvidia.com/gpu"),
            resources.get("limits", {}).get("nvidia.com/gpu"))


def test_gpu_overlay_gives_rvc_and_triton_one_gpu_each():
    deployments = of_kind(render("overlays/gpu"), "Deployment")
    for name, device_var in (("rvc", "RVC_DEVICE"), ("triton", "SPARK_TTS_DEVICE")):
        workload = deployments[name]
        c = container(workload, name)
        assert _gpus(c) == (1, 1), name
        # vLLM beside Triton asks for its own (a share of the GPU where the device
        # plugin shares GPUs: k8s/overlays/gpu/triton-gpu.yaml).
        if name == "triton":
            assert _gpus(container(workload, "vllm")) == (1, 1)
            assert env_of(c)["SPARK_TTS_LLM_DEVICE"] == "cuda"
        pod = pod_spec(workload)
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} \
            in pod["tolerations"]
        assert env_of(c)[device_var] == "cuda"
    assert int(env_of(container(deployments["rvc"], "rvc"))["RVC_WORKERS"]) >= 1
    for name in ("edge", "gateway", "tts-gateway"):
        for c in pod_spec(deployments[name])["containers"]:
            assert _gpus(c) == (None, None), name


def test_cpu_overlay_asks_for_no_gpu():
    objects = render("overlays/cpu")
    deployments = of_kind(objects, "Deployment")
    for name, workload in deployments.items():
        pod = pod_spec(workload)
        assert "nodeSelector" not in pod and "tolerations" not in pod, name
        for c in pod["containers"]:
            assert _gpus(c) == (None, None), name
    assert env_of(container(deployments["rvc"], "rvc"))["RVC_DEVICE"] == "cpu"
    assert env_of(container(deployments["rvc"], "rvc"))["RVC_WORKERS"] == "1"
    assert env_of(container(deployments["triton"], "triton"))["SPARK_TTS_DEVICE"] == "cpu"
    assert env_of(container(deployments["triton"], "triton"))["SPARK_TTS_LLM_DEVICE"] == "cpu"
    gpu = of_kind(render("overlays/gpu"), "Deployment")
    for name, container_name in (("rvc", "rvc"), ("triton", "triton"), ("triton", "vllm")):
        small = container(deployments[name], container_name)["resources"]["requests"]["memory"]
        large = container(gpu[name], container_name)["resources"]["requests"]["memory"]
        assert int(small.rstrip("Gi")) < int(large.rstrip("Gi")), container_name


# -- models, voices, Envoy --------------------------------------------------------


def test_models_come_from_the_volume(overlay):
    claims = of_kind(overlay, "PersistentVolumeClaim")
    assert set(claims) == {"models", "voice-library"}
    deployments = of_kind(overlay, "Deployment")
    for name, container_name in (("rvc", "rvc"), ("triton", "triton"), ("triton", "vllm")):
        workload = deployments[name]
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        (mount,) = [m for m in container(workload, container_name)["volumeMounts"]
                    if m["mountPath"] == "/models"]
        assert mount["readOnly"] is True
        # RVC's pod volume also carries its writable voices folder (read-only per
        # mount there: test_rvc_installs_voices_on_the_models_volume).
        expected = {"claimName": "models"} if name == "rvc" else {
            "claimName": "models", "readOnly": True}
        assert volumes[mount["name"]]["persistentVolumeClaim"] == expected
    rvc = env_of(container(deployments["rvc"], "rvc"))
    assert rvc["RVC_ASSETS_DIR"] == "/models/rvc-assets"
    for name, container_name in (("rvc", "rvc"), ("triton", "triton"), ("triton", "vllm")):
        assert env_of(container(deployments[name], container_name))["HF_HUB_OFFLINE"] == "1"
    # vLLM loads the LLM folder of the weights Triton's models load.
    vllm = container(deployments["triton"], "vllm")
    model = vllm["args"][vllm["args"].index("--model") + 1]
    triton_env = env_of(container(deployments["triton"], "triton"))
    assert model == triton_env["SPARK_TTS_MODEL_DIR"] + "/LLM"


def test_rvc_installs_voices_on_the_models_volume(overlay):
    """RVC_MODELS_DIR is the models claim's folder rvc (/models/rvc, which the models
    Job makes), mounted writable: a voice installed through one RVC pod is on the
    volume every RVC pod reads. The weights stay read-only."""
    workload = of_kind(overlay, "Deployment")["rvc"]
    c = container(workload, "rvc")
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    # One pod volume for the claim: a pod whose two volumes name one claim may never start.
    (claim,) = [name for name, v in volumes.items() if "persistentVolumeClaim" in v]
    assert volumes[claim]["persistentVolumeClaim"]["claimName"] == "models"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    voices = mounts[env_of(c)["RVC_MODELS_DIR"]]
    assert voices["name"] == claim and voices.get("subPath") == "rvc"
    assert not voices.get("readOnly")
    assert mounts["/models"]["name"] == claim and mounts["/models"]["readOnly"] is True
    assert [p for p, m in mounts.items() if m["name"] == claim and not m.get("readOnly")] == [
        voices["mountPath"]], "only the voices folder is writable"
    # Writable, the volume gets the pod's group; not by a walk over every weight each start.
    assert pod_spec(workload)["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    (job,) = of_kind(render("jobs/models-download"), "Job").values()
    commands = {x["name"]: " ".join(x["command"]) for x in pod_spec(job)["containers"]}
    assert "mkdir -p /models/rvc " in commands["rvc-assets"]


def test_claim_access_modes():
    for name in ("models", "voice-library"):
        gpu = of_kind(render("overlays/gpu"), "PersistentVolumeClaim")[name]
        cpu = of_kind(render("overlays/cpu"), "PersistentVolumeClaim")[name]
        assert gpu["spec"]["accessModes"] == ["ReadWriteMany"], name
        assert cpu["spec"]["accessModes"] == ["ReadWriteOnce"], name


def test_download_job_fills_the_volume():
    from services.rvc import download as rvc_download

    (job,) = of_kind(render("jobs/models-download"), "Job").values()
    spec = pod_spec(job)
    (claim,) = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert claim["persistentVolumeClaim"] == {"claimName": "models"}
    commands = {c["name"]: " ".join(c["command"]) for c in spec["containers"]}
    assert commands["spark-tts"].endswith("-m spark_tts.download /models/Spark-TTS-0.5B")
    assert "-m services.rvc.download /models/rvc-assets" in commands["rvc-assets"]
    assert "mkdir -p /models/rvc " in commands["rvc-assets"]
    assert rvc_download.FILES == ("hubert_base.pt", "rmvpe.pt")
    for c in spec["containers"]:
        assert any(m["mountPath"] == "/models" and not m.get("readOnly")
                   for m in c["volumeMounts"])
    assert spec["restartPolicy"] in ("OnFailure", "Never")


def _config_map_mount(folder: Path, files: dict[str, bytes], version: str) -> None:
    """``folder`` as the kubelet lays out a ConfigMap volume: each key a link into
    ..data, itself a link to a timestamped folder (an update swaps ..data)."""
    folder.mkdir(exist_ok=True)
    data = folder / f"..{version}"
    data.mkdir()
    for key, content in files.items():
        (data / key).write_bytes(content)
        if not (folder / key).is_symlink():
            (folder / key).symlink_to(Path("..data") / key)
    link = folder / "..data_tmp"
    link.symlink_to(data.name)
    link.replace(folder / "..data")


def _seeder(objects) -> tuple[list[str], dict]:
    """The gateway's seed-voices init container, checked: its script as this test can
    run it (paths last), and the ConfigMap it copies into the gateway's voices folder."""
    gateway = of_kind(objects, "Deployment")["gateway"]
    spec = pod_spec(gateway)
    volumes = {v["name"]: v for v in spec["volumes"]}
    main = container(gateway, "gateway")
    (seed,) = spec["initContainers"]
    assert seed["name"] == "seed-voices" and seed["image"] == main["image"]
    python, flag, script, source, library = seed["command"]
    assert (python, flag) == ("python", "-c")
    mounts = {m["mountPath"]: m for m in seed["volumeMounts"]}
    assert mounts[source]["readOnly"] is True
    config_map = volumes[mounts[source]["name"]]["configMap"]["name"]
    assert config_map.startswith("voices-"), "hashed: a changed list rolls the gateway pods"
    assert not mounts[library].get("readOnly")
    # The gateway's voices folder is the same writable claim, shared by every replica.
    voices_dir = env_of(main)["GATEWAY_VOICES_DIR"]
    assert voices_dir == library
    (mount,) = [m for m in main["volumeMounts"] if m["mountPath"] == voices_dir]
    assert not mount.get("readOnly") and mount["name"] == mounts[library]["name"]
    assert volumes[mount["name"]]["persistentVolumeClaim"] == {"claimName": "voice-library"}
    return [sys.executable, "-c", script], of_kind(objects, "ConfigMap")[config_map]


def test_voice_profiles_are_seeded_into_the_library(overlay, tmp_path):
    """The ConfigMap's profiles and clips reach the voice library: copied (not linked),
    each once, never over a file there, and never again once the API changed or
    deleted it; files added to the ConfigMap later are copied at the next start."""
    import base64

    from services.gateway.voices import VoiceBook

    script, voices = _seeder(overlay)
    assert voices["data"], "the base ships an example profile"
    files = {key: text.encode() for key, text in voices["data"].items()}
    files |= {key: base64.b64decode(b) for key, b in voices.get("binaryData", {}).items()}
    source, library = tmp_path / "configmap", tmp_path / "library"
    library.mkdir()
    _config_map_mount(source, files, "2026_01_01_00_00_00.1")

    def seed() -> None:
        subprocess.run([*script, str(source), str(library)], check=True, timeout=60,
                       capture_output=True)

    def visible() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in library.iterdir() if not p.name.startswith(".")}

    seed()
    assert visible() == files
    assert not any(p.is_symlink() for p in library.iterdir())
    assert sorted(p.name for p in library.iterdir() if p.name.startswith(".")) == [".seeded"]
    profiles = VoiceBook(library).profiles()
    assert profiles and all(not p.problem for p in profiles), [p.problem for p in profiles]
    # Changed through the API, then deleted: the ConfigMap's copy never comes back.
    first = sorted(files)[0]
    (library / first).write_bytes(b"{}")
    seed()
    assert (library / first).read_bytes() == b"{}"
    (library / first).unlink()
    seed()
    assert first not in visible()
    # A later file in the ConfigMap is copied; one already in the library is kept.
    (library / "taken.json").write_bytes(b"{}")
    _config_map_mount(source, {**files, "later.json": b"{\"skip_rvc\": true}",
                               "taken.json": b"{\"skip_rvc\": true}"}, "2026_01_02_00_00_00.1")
    seed()
    assert (library / "later.json").read_bytes() == b"{\"skip_rvc\": true}"
    assert (library / "taken.json").read_bytes() == b"{}"


def test_committed_envoy_configs_are_what_the_code_renders():
    from edge.render import render as render_envoy

    assert set(edge_k8s.COMMITTED_EDGES) == {
        K8S / "base" / "edge" / "envoy.json", K8S / "overlays" / "gpu" / "envoy.json",
        K8S / "overlays" / "gpu-mtls" / "envoy.json"}
    for path, edge in edge_k8s.COMMITTED_EDGES.items():
        committed = path.read_text()
        assert committed == edge_k8s.dumps(edge_k8s.render_k8s(edge)), \
            f"{path.relative_to(REPO)} is stale: run python -m edge.k8s"
        # Everything but the read-only stats listener is render()'s output, unchanged.
        config = json.loads(committed)
        resources = config["static_resources"]
        resources["listeners"] = [x for x in resources["listeners"] if x["name"] != "stats"]
        resources["clusters"] = [x for x in resources["clusters"] if x["name"] != "envoy_admin"]
        assert config == render_envoy(edge)
        assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


@pytest.mark.parametrize("name", OVERLAYS)
def test_envoy_config_matches_the_manifests(name):
    overlay = render(f"overlays/{name}")
    # The gpu overlay's edge adds TLS and JWT authentication (its own envoy.json),
    # gpu-mtls mTLS to the gateways.
    edge = {"gpu": edge_k8s.K8S_SECURE_EDGE, "gpu-mtls": edge_k8s.K8S_MTLS_EDGE}.get(
        name, edge_k8s.K8S_EDGE)
    assert edge.discovery == "STRICT_DNS"
    service = of_kind(overlay, "Service")[edge.gateway_host]
    assert service["spec"]["clusterIP"] == "None"
    assert edge.gateway_port in [p["port"] for p in service["spec"]["ports"]]
    gateway = of_kind(overlay, "Deployment")["gateway"]
    assert edge.gateway_port == _port(gateway, "gateway", "grpc")
    workload = of_kind(overlay, "Deployment")["edge"]
    assert edge.listen_port == _port(workload, "envoy", "http")
    assert edge_k8s.STATS_PORT == _port(workload, "envoy", "envoy-metrics")
    envoy = container(workload, "envoy")
    assert envoy["command"][:3] == ["envoy", "-c", "/etc/envoy/envoy.json"]
    (mount,) = [m for m in envoy["volumeMounts"] if m["mountPath"] == "/etc/envoy"]
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    config_map = of_kind(overlay, "ConfigMap")[volumes[mount["name"]]["configMap"]["name"]]
    assert config_map["metadata"]["name"].startswith("envoy-")  # hashed: changes roll the pods
    assert json.loads(config_map["data"]["envoy.json"]) == edge_k8s.render_k8s(edge)
    assert str(edge.descriptor) == "/app/gen/voice_v1.pb"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=2) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _envoy_on_free_ports(envoy: str, descriptor: Path, tmp_path: Path):
    """The committed config with loopback ports of its own, running; (process, stats, admin)."""
    for _ in range(3):  # a free port may be taken before Envoy binds it: try again
        config = json.loads((K8S / "base" / "edge" / "envoy.json").read_text())
        api, stats, admin = _free_port(), _free_port(), _free_port()
        config["admin"]["address"]["socket_address"]["port_value"] = admin
        for listener in config["static_resources"]["listeners"]:
            # The internal 100-continue listener (edge_continue) has no address, but a
            # transcoder of its own.
            if "address" in listener:
                address = listener["address"]["socket_address"]
                address["address"] = "127.0.0.1"
                address["port_value"] = {"edge": api, "stats": stats}[listener["name"]]
            for chain in listener["filter_chains"]:
                # The playground's files from web/, not the pod's ConfigMap mount.
                routes = chain["filters"][0]["typed_config"].get("route_config", {})
                for host in routes.get("virtual_hosts", []):
                    for route in host["routes"]:
                        body = route.get("direct_response", {}).get("body", {})
                        if "filename" in body:
                            body["filename"] = str(
                                REPO_WEB / Path(body["filename"]).relative_to(edge_k8s.WEB_DIR))
                for http_filter in chain["filters"][0]["typed_config"].get("http_filters", []):
                    if "proto_descriptor" in http_filter.get("typed_config", {}):
                        http_filter["typed_config"]["proto_descriptor"] = str(descriptor)
        for cluster in config["static_resources"]["clusters"]:
            endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            if "socket_address" not in endpoint["address"]:
                continue  # the internal listener's cluster
            socket_address = endpoint["address"]["socket_address"]
            if cluster["name"] == "envoy_admin":
                socket_address["port_value"] = admin
            else:
                socket_address["address"] = "127.0.0.1"
        path = tmp_path / "envoy.json"
        path.write_text(json.dumps(config))
        process = subprocess.Popen(
            [envoy, "-c", str(path), "--disable-hot-restart", "--log-level", "error",
             "--concurrency", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if _get(f"http://127.0.0.1:{stats}/ready") == 200:
                    return process, stats, admin
            except OSError:
                pass
            time.sleep(0.2)
        stop(process)
        error = process.stderr.read().decode()[-2000:]
        process.stderr.close()
        if "address already in use" not in error.lower():
            raise AssertionError(f"envoy did not start: {error}")
    raise AssertionError("envoy found no free ports")


def test_envoy_stats_listener_passes_only_read_only_admin_paths(tmp_path):
    """The committed config, run by a real Envoy on free loopback ports."""
    envoy = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")
    descriptor = REPO / "gen" / "voice_v1.pb"
    if not Path(envoy).exists() or not descriptor.exists():
        pytest.skip("envoy (the local extra) or gen/voice_v1.pb (make protos) is missing")
    process, stats, admin = _envoy_on_free_ports(envoy, descriptor, tmp_path)
    try:
        base = f"http://127.0.0.1:{stats}"
        assert _get(base + "/stats/prometheus") == 200
        for path_, method in (("/stats", "GET"), ("/quitquitquit", "POST"),
                              ("/drain_listeners", "POST"), ("/config_dump", "GET"),
                              ("/stats/prometheus", "POST"), ("/ready", "POST")):
            assert _get(base + path_, method) == 404, (path_, method)
        assert process.poll() is None
        # The edge's preStop hook (without its waits) drains Envoy through the
        # loopback admin port: /ready turns 503, what the readiness probe sees.
        edge = of_kind(render("overlays/cpu"), "Deployment")["edge"]
        hook = container(edge, "envoy")["lifecycle"]["preStop"]["exec"]["command"]
        assert hook[:2] == ["python", "-c"]
        script = re.sub(r"time\.sleep\(\d+\)", "time.sleep(0)", hook[2])
        script = script.replace("127.0.0.1:9901", f"127.0.0.1:{admin}")
        subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
        assert _get(base + "/ready") == 503
        assert _get(base + "/stats/prometheus") == 200
    finally:
        stop(process)
        process.stderr.close()


# -- network policies -------------------------------------------------------------


def _flows(policies: dict[str, dict], objects, direction: str) -> set[tuple[str, str, int]]:
    """(from, to, port) a policy allows; '*' is anyone, 'monitoring' the Prometheus namespace."""
    names = {
        workload_name: pod_labels(w) for workload_name, w in workloads(objects).items()
    }
    flows = set()
    for policy in policies.values():
        spec = policy["spec"]
        key = "ingress" if direction == "Ingress" else "egress"
        if direction not in spec.get("policyTypes", []):
            continue
        selected = [n for n, labels in names.items() if selects(spec["podSelector"], labels)]
        for rule in spec.get(key, []):
            peers = rule.get("from" if key == "ingress" else "to")
            if peers is None:
                others = ["*"]
            else:
                others = []
                for peer in peers:
                    if "namespaceSelector" in peer:
                        (ns,) = peer["namespaceSelector"]["matchLabels"].values()
                        others.append(ns)
                    else:
                        others += [n for n, labels in names.items()
                                   if selects(peer["podSelector"], labels)]
            for port in rule.get("ports", []):
                for here in selected:
                    for other in others:
                        flow = (other, here) if key == "ingress" else (here, other)
                        flows.add((*flow, port["port"]))
    return flows


# Component -> its pods' metrics ports (Triton's pods: tritonserver's, and vLLM's).
METRICS_PORTS = {"edge": (9902,), "gateway": (9101,), "tts-gateway": (9102,), "rvc": (9103,),
                 "triton": (8002, 8003)}


def test_network_policies_allow_exactly_the_request_path(overlay):
    objects = overlay + render("jobs/models-download")
    policies = of_kind(objects, "NetworkPolicy")
    default = policies["default-deny"]["spec"]
    assert default == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    ingress = _flows(policies, objects, "Ingress")
    expected = {
        ("*", "edge", 8080),
        ("edge", "gateway", 50051),
        ("gateway", "tts-gateway", 50052),
        ("gateway", "rvc", 50053),
        ("tts-gateway", "triton", 8001),
    }
    scrapes = {(ns, name, port) for (ns, name, port) in ingress if ns == "monitoring"}
    assert ingress - scrapes == expected
    for name, ports in METRICS_PORTS.items():
        for port in ports:
            assert ("monitoring", name, port) in scrapes, (name, port)
    # Every metrics port is one the component's pods really listen on.
    deployments = of_kind(overlay, "Deployment")
    for name, ports in METRICS_PORTS.items():
        listening = {p["containerPort"] for c in pod_spec(deployments[name])["containers"]
                     for p in c.get("ports", [])}
        assert set(ports) <= listening, name
    egress = _flows(policies, objects, "Egress")
    dns = {flow for flow in egress if flow[1] == "*" and flow[2] == 53}
    assert {name for name, _, _ in dns} == {*COMPONENTS, "models-download"}
    assert egress - dns == {
        ("edge", "gateway", 50051),
        ("gateway", "tts-gateway", 50052),
        ("gateway", "rvc", 50053),
        ("tts-gateway", "triton", 8001),
        ("models-download", "*", 443),
    }


def test_every_component_has_its_own_network_policy(overlay):
    objects = overlay + render("jobs/models-download")
    policies = of_kind(objects, "NetworkPolicy")
    for name in workloads(objects):
        own = [p for p in policies.values()
               if p["spec"]["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": name}]
        assert own, f"{name} has no NetworkPolicy of its own"


def test_namespace_enforces_restricted_pod_security(overlay):
    (namespace,) = of_kind(overlay, "Namespace").values()
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# -- policy scanner ---------------------------------------------------------------


def _checkov() -> str:
    for candidate in (os.environ.get("CHECKOV"), str(REPO / ".venv-tools" / "bin" / "checkov"),
                      shutil.which("checkov")):
        if candidate and Path(candidate).exists():
            return candidate
    _missing("checkov", "python3 -m venv .venv-tools && .venv-tools/bin/pip install checkov")
    raise AssertionError  # unreachable


def test_checkov_skips_are_justified():
    for target in TARGETS:
        for obj in render(target):
            for key, value in obj["metadata"].get("annotations", {}).items():
                if key.startswith("checkov.io/skip"):
                    check, _, reason = value.partition("=")
                    assert re.fullmatch(r"CKV2?_K8S_\d+", check), value
                    assert len(reason.split()) >= 6, f"{obj['metadata']['name']}: {value}"


def test_checkov_passes(tmp_path):
    checkov = _checkov()
    for target in TARGETS:
        (tmp_path / f"{target.replace('/', '-')}.yaml").write_text(
            yaml.safe_dump_all(render(target), sort_keys=False)
        )
    done = subprocess.run(
        [checkov, "--directory", str(tmp_path), "--framework", "kubernetes", "--quiet",
         "--compact", "--skip-download", "--output", "cli"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert "Failed checks: 0" in done.stdout, done.stdout[-8000:]
