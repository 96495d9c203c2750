# voice.v1.VoiceConversion (python -m services.rvc): RVC on a pool of worker
# processes, on the GPUs the pod gets or on its CPUs.
#
#   docker build -f docker/rvc.Dockerfile -t voice-pipeline/rvc:TAG .          # CUDA torch
#   docker build -f docker/rvc.Dockerfile -t voice-pipeline/rvc:TAG-cpu \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .      # CPU-only torch
#
# The runtime base is plain python:3.11-slim, not an nvidia/cuda image: a CUDA
# build of torch carries its CUDA runtime, cuBLAS and cuDNN as nvidia-* wheels,
# and the NVIDIA container toolkit mounts the one thing it lacks, the driver
# (libcuda), into any image of a pod that is given a GPU. A CUDA base image
# would ship those libraries a second time (gigabytes). The same image runs on
# CPU nodes (RVC_DEVICE=auto falls back to the CPU).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: the virtualenv and the generated protobuf code -----------------
FROM ${PYTHON_IMAGE} AS builder

# Where torch comes from: a CUDA 12.x build by default, or .../whl/cpu. The
# version is constraints.txt's pin; a build with a local label (2.13.0+cu126)
# satisfies torch==2.13.0, so the constrained install below keeps it.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# pyworld has no wheels: it compiles from source (C++). Builder stage only.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# The dependency layers depend on these two files only, so code changes reuse them.
COPY pyproject.toml constraints.txt ./

# torch first, from TORCH_INDEX_URL (with the CUDA wheels it needs); then
# pyproject's base dependencies and the rvc extra (not the project itself: its
# code is copied to /app below), pinned by constraints.txt. That pins
# setuptools below 81 too: pyworld imports pkg_resources. pyworld's own build
# (isolated, numpy>=2 as it requires) is not constrained: -c does not reach
# build environments. A .pth file puts /app and the generated stubs on the
# path, as `make protos` does for .venv.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --index-url "$TORCH_INDEX_URL" "torch==$(sed -n 's/^torch==//p' constraints.txt)" \
 && python -c 'import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; groups = dict(p["optional-dependencies"], base=p["dependencies"]); print("\n".join(d for g in sys.argv[1:] for d in groups[g]))' base rvc > requirements.txt \
 && /opt/venv/bin/pip install -c constraints.txt -r requirements.txt \
 && /opt/venv/bin/python -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)' \
 && /opt/venv/bin/python -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "voice_api.pth").write_text("/app\n/app/gen/python\n")'

# protoc with the google/api and google/protobuf includes, in a virtualenv of
# its own so that grpcio-tools stays out of the image.
RUN python -m venv /opt/protoc \
 && /opt/protoc/bin/pip install -c constraints.txt grpcio-tools googleapis-common-protos

# Exactly `make protos`: Python stubs in gen/python and the descriptor set.
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

# HOME and NUMBA_CACHE_DIR: torch, transformers and librosa's numba functions
# write caches, and the root filesystem is read-only in the pods (/tmp is an
# emptyDir there). Weights live on the models volume at /models.
# NVIDIA_DRIVER_CAPABILITIES: what the container toolkit mounts for a pod given
# a GPU (compute: libcuda; utility: nvidia-smi). NVIDIA_VISIBLE_DEVICES is left
# to the device plugin: set to "all" here, pods without a GPU request would see
# every GPU of their node.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    NUMBA_CACHE_DIR=/tmp/numba \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    RVC_HOST=0.0.0.0 \
    RVC_MODELS_DIR=/models/rvc \
    RVC_ASSETS_DIR=/models/rvc-assets

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app/gen /app/gen
COPY services /app/services
RUN python -m compileall -q --invalidation-mode unchecked-hash /app

WORKDIR /app
USER 10001:10001

# Fails the build if a dependency or a compiled extension cannot load here,
# without build-essential, as the pods would.
RUN python -c 'import torch, faiss, pyworld, parselmouth, torchcrepe, services.rvc.__main__'

# gRPC and Prometheus /metrics.
EXPOSE 50053 9103

ENTRYPOINT ["python", "-m", "services.rvc"]
