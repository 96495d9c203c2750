"""The model repository that serves the transformers loop as Triton's ``llm``.

A copy of the repository's ``triton/model_repo`` in which ``llm/`` is the model
as it was before vLLM (``config.pbtxt`` and ``model.py`` of this folder, with
``loop.py`` beside ``model.py`` in ``llm/1/``: the stub imports it from there),
and ``spark_tts`` lets through as many requests at once as it did then (2 on
the CPU, 8 on a GPU). The local stack renders its own copy from this one
(localstack/prepare/model_repo.py), as from the repository's.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
# spark_tts's requests at once before vLLM: 2 on the CPU; on a GPU the stack raised
# it to 8, the llm's batch size.
CPU_CONCURRENCY = 2
GPU_CONCURRENCY = 8
_CONCURRENCY = re.compile(r'(key: "spark_tts_max_concurrency" value: \{ string_value: ")\d+(")')


def legacy_model_repo(src: Path, dst: Path, max_concurrency: int = CPU_CONCURRENCY) -> Path:
    """``src`` (a model repository with ``llm`` and ``spark_tts``) copied to ``dst``
    (replacing it), with the legacy ``llm`` and spark_tts's cap at ``max_concurrency``."""
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency {max_concurrency}: need at least 1")
    for model in ("llm", "spark_tts"):
        if not (src / model / "config.pbtxt").is_file():
            raise FileNotFoundError(f"{src} has no {model}/config.pbtxt")
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    llm = dst / "llm"
    shutil.rmtree(llm)
    (llm / "1").mkdir(parents=True)
    shutil.copy2(HERE / "config.pbtxt", llm / "config.pbtxt")
    shutil.copy2(HERE / "model.py", llm / "1" / "model.py")
    shutil.copy2(HERE / "loop.py", llm / "1" / "loop.py")
    config = dst / "spark_tts" / "config.pbtxt"
    text, found = _CONCURRENCY.subn(rf"\g<1>{max_concurrency}\g<2>", config.read_text())
    if found != 1:  # a renamed parameter must not leave the new cap in place unnoticed
        raise ValueError(f"{config}: no single spark_tts_max_concurrency parameter to set")
    config.write_text(text)
    return dst
