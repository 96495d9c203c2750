"""Downloads the official Spark-TTS-0.5B checkpoint (`make models`).

    python -m spark_tts.download models/Spark-TTS-0.5B
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spark_tts.layout import check_layout

REPO_ID = "SparkAudio/Spark-TTS-0.5B"


def download(target: Path, revision: str | None = None) -> Path:
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id=REPO_ID, local_dir=str(target), revision=revision)
    check_layout(target)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path)
    parser.add_argument("--revision", default=None, help="a commit of the model repository")
    args = parser.parse_args()
    try:
        print(download(args.target, args.revision))
    except Exception as exc:  # offline, wrong token, partial download: say which
        print(f"could not download {REPO_ID}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
