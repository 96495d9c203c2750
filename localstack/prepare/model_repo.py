"""Renders the Triton model repository with deployment choices filled in.

The repository in git keeps one instance per model on the CPU. Instance
counts and the device are deployment decisions, so they are set here, from
settings, in a copy that Triton serves; nobody edits config files by hand.

    python -m localstack.prepare.model_repo SRC DST --instances llm=2,vocoder=2 --gpu
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

_INSTANCE_GROUP = re.compile(r"instance_group\s*\[[^\]]*\]")


def parse_instances(spec: str) -> dict[str, int]:
    """'llm=2, vocoder=1' -> {'llm': 2, 'vocoder': 1}."""
    counts = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        if not name or not value.isdigit() or int(value) < 1:
            raise ValueError(f"instance count {part!r} is not NAME=N with N >= 1")
        counts[name.strip()] = int(value)
    return counts


def render(src: Path, dst: Path, instances: dict[str, int], gpu: bool) -> Path:
    """Copy ``src`` to ``dst`` (replacing it), with instance groups rewritten."""
    unknown = set(instances) - {p.name for p in src.iterdir() if (p / "config.pbtxt").is_file()}
    if unknown:
        raise ValueError(f"no model named {sorted(unknown)} in {src}")
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    kind = "KIND_GPU" if gpu else "KIND_CPU"
    for config in dst.glob("*/config.pbtxt"):
        count = instances.get(config.parent.name, 1)
        text = config.read_text()
        group = f"instance_group [ {{ kind: {kind} count: {count} }} ]"
        text = _INSTANCE_GROUP.sub(group, text, count=1)
        config.write_text(text)
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--instances", default="", help="NAME=N,... (default 1 each)")
    parser.add_argument("--gpu", action="store_true", help="place instances on GPUs")
    args = parser.parse_args()
    print(render(args.src, args.dst, parse_instances(args.instances), args.gpu))


if __name__ == "__main__":
    main()
