"""bench.procstats.resources on this test's own process and a child of it."""

import os
import subprocess
import sys
import tempfile

import pytest

from bench import procstats

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc (Linux)")


def test_a_process_counts_its_memory_files_and_threads():
    me = procstats.resources({"me": os.getpid()})["me"]
    assert me["processes"] >= 1  # with whatever children this test process has
    assert me["rss_mib"] > 1 and me["threads"] >= 1 and me["fds"] >= 3


def test_open_files_are_counted():
    before = procstats.resources({"me": os.getpid()})["me"]["fds"]
    with tempfile.TemporaryDirectory() as tmp:
        handles = [open(os.path.join(tmp, str(i)), "w") for i in range(20)]  # noqa: SIM115
        try:
            during = procstats.resources({"me": os.getpid()})["me"]["fds"]
        finally:
            for handle in handles:
                handle.close()
    assert during >= before + 20


def test_descendants_count_with_their_root_and_a_missing_root_counts_nothing():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        both = procstats.resources({"me": os.getpid()})["me"]
        alone = procstats.resources({"child": child.pid})["child"]
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    assert both["processes"] >= 2
    assert alone["processes"] == 1 and alone["threads"] >= 1
    assert both["rss_mib"] > alone["rss_mib"]
    gone = procstats.resources({"child": child.pid})["child"]
    assert gone == {"rss_mib": 0.0, "fds": 0, "threads": 0, "processes": 0}
