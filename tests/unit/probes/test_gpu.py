from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from monitor.probes.gpu import GpuProbe, NvmlCallError, PynvmlReader
from tests.support.fake_nvml import FakeNvmlReader, device, gpu_lost, not_supported

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def probe_on(*devices: dict[str, object]) -> tuple[GpuProbe, FakeNvmlReader]:
    reader = FakeNvmlReader(devices=list(devices))
    return GpuProbe(reader, now=lambda: T0), reader


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_samples_every_device_with_units_converted() -> None:
    probe, _ = probe_on(
        device("GPU-a", power_mw=72_500, used=6 * 2**30, total=24 * 2**30, processes=[(41, 2**30)]),
        device("GPU-b", name="NVIDIA A100", utilization=0, temperature=35, processes=[(7, None)]),
    )
    first, second = probe.sample()
    assert (first.index, first.uuid, first.name, first.ts) == (0, "GPU-a", "NVIDIA L4", T0)
    assert first.power_w == 72.5
    assert first.memory_used_bytes == 6 * 2**30
    assert first.memory_percent == 25.0
    assert [(p.pid, p.used_bytes) for p in first.processes or ()] == [(41, 2**30)]
    assert (second.name, second.utilization_percent, second.temperature_c) == ("NVIDIA A100", 0, 35)
    assert [(p.pid, p.used_bytes) for p in second.processes or ()] == [(7, None)]


def test_an_unsupported_field_is_none_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="monitor.probes.gpu")
    probe, reader = probe_on(device("GPU-a", power_mw=not_supported(), processes=not_supported()))
    samples = [probe.sample()[0] for _ in range(3)]
    assert all(s.power_w is None and s.processes is None for s in samples)
    assert all(s.temperature_c == 60.0 and s.memory_used_bytes for s in samples)
    unsupported = [m for m in messages(caplog, logging.INFO) if "does not support" in m]
    assert len(unsupported) == 2  # power and processes, once each

    reader.devices[0]["power"] = 30_000.0  # it reads again: then a new failure is news again
    assert probe.sample()[0].power_w == 30.0
    reader.devices[0]["power"] = NvmlCallError(999, "Unknown Error")
    assert probe.sample()[0].power_w is None
    probe.sample()
    assert [m for m in messages(caplog, logging.WARNING) if "power" in m] == [
        "GPU 0 (GPU-a): cannot read power: Unknown Error"
    ]


def test_a_device_that_disappears_is_left_out_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="monitor.probes.gpu")
    probe, reader = probe_on(device("GPU-a"), device("GPU-b"))
    assert [s.uuid for s in probe.sample()] == ["GPU-a", "GPU-b"]

    gone = reader.devices.pop(0)
    assert [(s.index, s.uuid) for s in probe.sample()] == [(0, "GPU-b")]
    assert [(s.index, s.uuid) for s in probe.sample()] == [(0, "GPU-b")]
    assert messages(caplog, logging.WARNING) == ["GPU probe: NVIDIA L4 (GPU-a) is gone"]

    reader.devices.append(gone)
    assert [s.uuid for s in probe.sample()] == ["GPU-b", "GPU-a"]
    assert "GPU probe: NVIDIA L4 (GPU-a) appeared" in messages(caplog, logging.INFO)


def test_a_lost_gpu_is_left_out_while_the_others_are_sampled() -> None:
    probe, reader = probe_on(device("GPU-a"), device("GPU-b"))
    reader.devices[0]["temperature"] = gpu_lost()
    assert [s.uuid for s in probe.sample()] == ["GPU-b"]
    reader.devices[1]["uuid"] = NvmlCallError(2, "Invalid Argument")  # no longer identifiable
    assert probe.sample() == []


def test_a_failing_device_count_gives_no_samples_and_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe, reader = probe_on(device("GPU-a"))
    reader.count_error = NvmlCallError(1, "Uninitialized")
    assert probe.sample() == [] and probe.sample() == []
    assert len(messages(caplog, logging.WARNING)) == 1
    reader.count_error = None
    assert len(probe.sample()) == 1


def test_no_bindings_means_one_warning_and_no_samples(caplog: pytest.LogCaptureFixture) -> None:
    def missing() -> FakeNvmlReader:
        raise ImportError("No module named 'pynvml'")

    probe = GpuProbe.open(missing)
    assert not probe.available
    assert [probe.sample() for _ in range(3)] == [[], [], []]
    (warning,) = messages(caplog, logging.WARNING)
    assert "GPU probe disabled" in warning and "nvidia-ml-py" in warning


def test_close_shuts_the_reader_down_once() -> None:
    probe, reader = probe_on(device("GPU-a"))
    probe.close()
    probe.close()
    assert reader.closed and probe.sample() == []


def _nvml_initialises() -> bool:
    try:
        PynvmlReader().close()
    except (ImportError, NvmlCallError):
        return False
    return True


NVML_PRESENT = _nvml_initialises()


@pytest.mark.skipif(NVML_PRESENT, reason="this machine has NVML and a GPU")
def test_the_real_reader_without_nvml_fails_to_initialise_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe = GpuProbe.open()
    assert not probe.available
    assert probe.unavailable_reason is not None and "NVML" in probe.unavailable_reason
    assert [probe.sample() for _ in range(3)] == [[], [], []]
    assert len(messages(caplog, logging.WARNING)) == 1
    probe.close()


@pytest.mark.skipif(not NVML_PRESENT, reason="no NVML or no GPU on this machine")
def test_the_real_reader_samples_the_gpus() -> None:
    probe = GpuProbe.open()
    try:
        samples = probe.sample()
        assert samples and all(s.uuid and s.memory_total_bytes for s in samples)
    finally:
        probe.close()
