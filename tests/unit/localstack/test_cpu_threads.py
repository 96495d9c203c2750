"""On the CPU, Spark TTS and the RVC workers each get a share of the cores, not all of them."""

import pytest

from localstack.config import StackConfig
from services.common.settings import SettingsError, from_env
from services.rvc.__main__ import pool_config
from services.rvc.settings import RvcSettings


@pytest.mark.parametrize("cores, split", [(1, (1, 1)), (2, (1, 1)), (8, (4, 4)), (7, (3, 4))])
def test_the_cores_are_split_between_synthesis_and_conversion(monkeypatch, cores, split):
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert StackConfig().cpu_threads() == split


def test_explicit_thread_counts_win_and_are_checked():
    config = from_env(StackConfig, "STACK", {"STACK_TTS_CPU_THREADS": "3",
                                              "STACK_RVC_CPU_THREADS": "5"})
    assert config.cpu_threads() == (3, 5)
    with pytest.raises(SettingsError, match="STACK_RVC_CPU_THREADS"):
        from_env(StackConfig, "STACK", {"STACK_RVC_CPU_THREADS": "-1"})


def test_rvc_cpu_workers_share_the_thread_budget(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    base = {"RVC_DEVICE": "cpu", "RVC_WORKERS": "2"}
    assert pool_config(from_env(RvcSettings, "RVC", base)).handler_args["threads"] == 8
    budget = from_env(RvcSettings, "RVC", {**base, "RVC_CPU_THREADS": "6"})
    assert pool_config(budget).handler_args["threads"] == 3
    tight = from_env(RvcSettings, "RVC", {**base, "RVC_WORKERS": "4", "RVC_CPU_THREADS": "2"})
    assert pool_config(tight).handler_args["threads"] == 1
    with pytest.raises(SettingsError, match="RVC_CPU_THREADS"):
        from_env(RvcSettings, "RVC", {"RVC_CPU_THREADS": "-2"})
