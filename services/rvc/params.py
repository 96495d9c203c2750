"""Conversion parameters with the RVC WebUI's meanings, defaults and ranges."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

from services.common.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from services.common.errors import InvalidArgument


class F0Method(Enum):
    RMVPE = "rmvpe"
    CREPE = "crepe"
    CREPE_TINY = "crepe-tiny"
    HARVEST = "harvest"
    DIO = "dio"
    PM = "pm"


def _within(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise InvalidArgument(f"{name} {value:g} is outside {low:g}..{high:g}")


@dataclass(frozen=True)
class ConversionParams:
    model: str = ""
    pitch_shift: int = 0
    f0_method: F0Method = F0Method.RMVPE
    index_rate: float = 0.75
    filter_radius: int = 3
    resample_sr: int = 0
    rms_mix_rate: float = 0.25
    protect: float = 0.33

    def __post_init__(self) -> None:
        _within("pitch_shift", self.pitch_shift, -24, 24)
        _within("index_rate", self.index_rate, 0.0, 1.0)
        _within("filter_radius", self.filter_radius, 0, 7)
        _within("rms_mix_rate", self.rms_mix_rate, 0.0, 1.0)
        _within("protect", self.protect, 0.0, 0.5)
        if self.resample_sr:
            _within("resample_sr", self.resample_sr, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)

    def to_wire(self) -> dict:
        """Plain data for the worker pipe."""
        return {**dataclasses.asdict(self), "f0_method": self.f0_method.value}

    @classmethod
    def from_wire(cls, data: dict) -> "ConversionParams":
        return cls(**{**data, "f0_method": F0Method(data["f0_method"])})
