"""How the bench's report shows numbers and names (bench/report.py,
bench/targets.py, bench/charts.py).
"""

from __future__ import annotations

LAYER_NAMES = {"edge": "Envoy (edge)", "gateway": "gateway", "tts_service": "TTS service",
               "triton": "Triton", "rvc_service": "RVC service", "in_process": "in-process"}



def ms(value: float | None) -> str:
    """Seconds as whole milliseconds; "–" when not measured."""
    return "–" if value is None else f"{value * 1000:.0f}"


def num(value: float | None, digits: int = 2) -> str:
    """A number with ``digits`` decimals; "–" when not measured."""
    return "–" if value is None else f"{value:.{digits}f}"
