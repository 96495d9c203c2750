"""Downloads the shared RVC assets (`make models`): HuBERT/ContentVec and RMVPE.

    python -m services.rvc.download models/rvc-assets

Voices are yours to bring: put each WebUI ``.pth`` (and its ``added_*.index``)
in ``models/rvc/<name>/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The RVC WebUI's own asset repository: the fairseq hubert_base.pt and rmvpe.pt it uses.
REPO_ID = "lj1995/VoiceConversionWebUI"
FILES = ("hubert_base.pt", "rmvpe.pt")


def download(target: Path, revision: str | None = None) -> Path:
    from huggingface_hub import hf_hub_download

    target.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        hf_hub_download(repo_id=REPO_ID, filename=name, local_dir=str(target), revision=revision)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path)
    parser.add_argument("--revision", default=None, help="a commit of the asset repository")
    args = parser.parse_args()
    try:
        print(download(args.target, args.revision))
    except Exception as exc:  # offline, wrong token, partial download: say which
        print(f"could not download {REPO_ID}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
