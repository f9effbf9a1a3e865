"""A scripted NVML for the GPU probe's tests: devices are dicts of readings, edited between samples.

A reading that is an exception instance is raised instead of returned, so a test can make one
field unsupported (`not_supported()`), fail, or the whole device lost (`gpu_lost()`); removing a
device from `devices` makes it disappear from the count, as a GPU that fell off the bus does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitor.probes.gpu import NVML_ERROR_GPU_IS_LOST, NVML_ERROR_NOT_SUPPORTED, NvmlCallError


def not_supported() -> NvmlCallError:
    return NvmlCallError(NVML_ERROR_NOT_SUPPORTED, "Not Supported")


def gpu_lost() -> NvmlCallError:
    return NvmlCallError(NVML_ERROR_GPU_IS_LOST, "GPU is lost")


def device(
    uuid: str,
    *,
    name: str = "NVIDIA L4",
    utilization: float | Exception = 50.0,
    used: int = 4 * 2**30,
    total: int = 24 * 2**30,
    temperature: float | Exception = 60.0,
    power_mw: float | Exception = 72_000.0,
    processes: list[tuple[int, int | None]] | Exception | None = None,
) -> dict[str, Any]:
    """One device's readings; pass an exception for a field to make reading it raise."""
    return {
        "uuid": uuid,
        "name": name,
        "utilization": utilization,
        "memory": (used, total),
        "temperature": temperature,
        "power": power_mw,
        "processes": processes if processes is not None else [],
    }


@dataclass
class FakeNvmlReader:
    """Implements `monitor.probes.gpu.NvmlReader` from `devices`; counts the calls it answers."""

    devices: list[dict[str, Any]] = field(default_factory=list)
    count_error: NvmlCallError | None = None
    calls: int = 0
    closed: bool = False

    def _read(self, index: int, key: str) -> Any:
        self.calls += 1
        if index >= len(self.devices):
            raise NvmlCallError(2, "Invalid Argument")
        value = self.devices[index][key]
        if isinstance(value, Exception):
            raise value
        return value

    def device_count(self) -> int:
        if self.count_error is not None:
            raise self.count_error
        return len(self.devices)

    def device_uuid(self, index: int) -> str:
        return str(self._read(index, "uuid"))

    def device_name(self, index: int) -> str:
        return str(self._read(index, "name"))

    def utilization_percent(self, index: int) -> float:
        return float(self._read(index, "utilization"))

    def memory_bytes(self, index: int) -> tuple[int, int]:
        used, total = self._read(index, "memory")
        return int(used), int(total)

    def temperature_c(self, index: int) -> float:
        return float(self._read(index, "temperature"))

    def power_mw(self, index: int) -> float:
        return float(self._read(index, "power"))

    def process_memory(self, index: int) -> list[tuple[int, int | None]]:
        return list(self._read(index, "processes"))

    def close(self) -> None:
        self.closed = True
