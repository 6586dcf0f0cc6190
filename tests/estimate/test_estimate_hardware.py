"""Memory sizes, GPU names and profiles: parsed, or refused with a message that says what is accepted."""

from __future__ import annotations

import pytest

from tuneforge.estimate.hardware import HardwareError, choose, lookup, parse_memory


@pytest.mark.parametrize(("text", "gib"), [("24GiB", 24.0), ("24 GiB", 24.0), ("24 GB", 24e9 / 2**30),
                                          ("24000MB", 24e9 / 2**30), ("80g", 80.0), ("141.5GiB", 141.5)])
def test_memory_strings(text, gib):
    assert parse_memory(text) == pytest.approx(gib)


@pytest.mark.parametrize("text", ["24", "24 gigs", "GB", "0GB", "-3GiB"])
def test_bad_memory_strings_are_refused_clearly(text):
    with pytest.raises(HardwareError, match="24GiB"):
        parse_memory(text)


def test_gpu_names_aliases_and_profiles():
    assert lookup("H100").memory_gib == pytest.approx(79.6)
    assert lookup("NVIDIA H200").name == "NVIDIA H200"
    assert lookup("4090").memory_gib == lookup("rtx4090").memory_gib
    two = lookup("2x48gb")
    assert (two.gpus, two.memory_gib) == (2, pytest.approx(47.5))


def test_unknown_gpu_suggests_and_lists():
    with pytest.raises(HardwareError, match=r"unknown GPU 'h10'.*h100.*--gpu-memory"):
        lookup("h10")


def test_choose_combines_flags():
    hw = choose("h100", "40GiB", 4)
    assert (hw.name, hw.memory_gib, hw.gpus) == ("NVIDIA H100 80GB HBM3", 40.0, 4)
    with pytest.raises(HardwareError, match="at least 1"):
        choose("h100", None, 0)
