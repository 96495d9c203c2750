"""Everything the stack's processes run on, made ready before any of them starts:
the bundled tritonserver, the rendered Triton model repository, the model weights
(real, or generated tiny ones, said out loud) and the voice profiles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from localstack.config import StackConfig
from localstack.prepare import model_repo, models, triton_dist


@dataclass(frozen=True)
class Assets:
    triton: triton_dist.TritonDist
    # The copy of the model repository that Triton serves, instances filled in.
    model_repo: Path
    spark_dir: Path
    rvc_voices: Path
    rvc_assets: Path
    # The TTS engine of requests that name none: spark or piper.
    engine: str
    voices_dir: Path
    # Whether the voice profiles are the generated demos (``demo`` the default).
    demo_voices: bool
    # Where the TTS service marks cancelled requests for Triton's models.
    cancel_dir: Path


def prepare(config: StackConfig, run_dir: Path, env: dict[str, str], gpu: bool) -> Assets:
    """The assets of ``config`` in ``run_dir``: tiny models are generated there (by
    Python in the services' environment ``env``) where no real ones are installed;
    ``gpu`` places Triton's model instances on GPUs."""
    triton = triton_dist.locate(run_dir)
    repo_dir = model_repo.render(
        config.model_repo.resolve(), run_dir / "model_repo",
        model_repo.parse_instances(config.triton_instances), gpu,
    )
    spark_dir = models.spark_model_dir(config.models_dir, run_dir, env)
    rvc_voices, rvc_assets = models.rvc_model_dirs(config.models_dir, run_dir, env)
    engine = models.tts_engine(config.tts_engine, config.models_dir)
    voices_dir, demo_voices = models.voices_dir(
        config.models_dir, run_dir, generated_rvc=rvc_voices.parent.name == models.TINY_RVC_DIR,
        engine=engine,
    )
    cancel_dir = run_dir / "cancel"
    cancel_dir.mkdir(exist_ok=True)
    return Assets(
        triton=triton, model_repo=repo_dir, spark_dir=spark_dir, rvc_voices=rvc_voices,
        rvc_assets=rvc_assets, engine=engine, voices_dir=voices_dir, demo_voices=demo_voices,
        cancel_dir=cancel_dir,
    )
