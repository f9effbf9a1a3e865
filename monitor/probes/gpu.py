"""`GpuProbe`: per GPU utilisation, memory, temperature, power and per-process memory, from NVML.

    GpuProbe.open() ──▶ PynvmlReader (nvidia-ml-py) ──▶ GpuProbe(reader).sample() ──▶ [GpuSample]
          │ no bindings, no driver, no GPU
          ▼
    GpuProbe.unavailable(reason): one warning, then [] on every sample

The probe reads through `NvmlReader`, the few NVML calls it needs, so tests feed it scripted
readings. Every call may raise `NvmlCallError`. A field NVML does not support on a device (power
on some boards, per-process memory in some modes) or fails to read becomes `None` and is logged
once until it reads again; a device that is lost or no longer listed is left out of the sample
and logged once as gone (and again when it comes back). Nothing here raises out of `sample()`.
NVML calls block: call `sample()` in a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from monitor.record import utcnow

logger = logging.getLogger(__name__)

# NVML's error codes (nvml.h), so this module need not import pynvml to read them
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_GPU_IS_LOST = 15
_NOT_AVAILABLE = 0xFFFFFFFFFFFFFFFF  # NVML_VALUE_NOT_AVAILABLE, for per-process memory

T = TypeVar("T")


class NvmlCallError(Exception):
    """An NVML call failed; `code` is NVML's error code (None when unknown)."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def not_supported(self) -> bool:
        return self.code == NVML_ERROR_NOT_SUPPORTED


class NvmlReader(Protocol):
    """The NVML calls the probe makes, by device index. Each may raise `NvmlCallError`."""

    def device_count(self) -> int: ...
    def device_uuid(self, index: int) -> str: ...
    def device_name(self, index: int) -> str: ...
    def utilization_percent(self, index: int) -> float: ...
    def memory_bytes(self, index: int) -> tuple[int, int]:
        """(used, total)."""
        ...

    def temperature_c(self, index: int) -> float: ...
    def power_mw(self, index: int) -> float: ...
    def process_memory(self, index: int) -> list[tuple[int, int | None]]:
        """(pid, GPU memory used in bytes, None where NVML does not know) per process."""
        ...

    def close(self) -> None: ...


class PynvmlReader:
    """The real reader, on nvidia-ml-py. Raises ImportError or `NvmlCallError` when built."""

    def __init__(self) -> None:
        import pynvml  # imported here: its absence is a normal condition, reported by `open()`

        self._nvml: Any = pynvml
        self._call(pynvml.nvmlInit)

    def _call(self, function: Callable[..., T], *args: Any) -> T:
        try:
            return function(*args)
        except self._nvml.NVMLError as exc:
            raise NvmlCallError(getattr(exc, "value", None), str(exc)) from exc

    def _handle(self, index: int) -> Any:
        return self._call(self._nvml.nvmlDeviceGetHandleByIndex, index)

    def device_count(self) -> int:
        return int(self._call(self._nvml.nvmlDeviceGetCount))

    def device_uuid(self, index: int) -> str:
        return _text(self._call(self._nvml.nvmlDeviceGetUUID, self._handle(index)))

    def device_name(self, index: int) -> str:
        return _text(self._call(self._nvml.nvmlDeviceGetName, self._handle(index)))

    def utilization_percent(self, index: int) -> float:
        rates = self._call(self._nvml.nvmlDeviceGetUtilizationRates, self._handle(index))
        return float(rates.gpu)

    def memory_bytes(self, index: int) -> tuple[int, int]:
        info = self._call(self._nvml.nvmlDeviceGetMemoryInfo, self._handle(index))
        return int(info.used), int(info.total)

    def temperature_c(self, index: int) -> float:
        sensor = self._nvml.NVML_TEMPERATURE_GPU
        return float(self._call(self._nvml.nvmlDeviceGetTemperature, self._handle(index), sensor))

    def power_mw(self, index: int) -> float:
        return float(self._call(self._nvml.nvmlDeviceGetPowerUsage, self._handle(index)))

    def process_memory(self, index: int) -> list[tuple[int, int | None]]:
        handle = self._handle(index)
        used: dict[int, int | None] = {}
        for listing in (
            self._nvml.nvmlDeviceGetComputeRunningProcesses,
            self._nvml.nvmlDeviceGetGraphicsRunningProcesses,
        ):
            for proc in self._call(listing, handle):
                memory = proc.usedGpuMemory
                if memory is not None and memory != _NOT_AVAILABLE:
                    used[proc.pid] = int(memory)
                else:
                    used.setdefault(proc.pid, None)
        return sorted(used.items())

    def close(self) -> None:
        self._call(self._nvml.nvmlShutdown)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True, slots=True)
class GpuProcessMemory:
    pid: int
    used_bytes: int | None


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One device at one instant; a field NVML could not read is None."""

    ts: datetime
    index: int
    uuid: str
    name: str
    utilization_percent: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    temperature_c: float | None
    power_w: float | None
    processes: tuple[GpuProcessMemory, ...] | None  # None when NVML cannot list them

    @property
    def memory_percent(self) -> float | None:
        if self.memory_used_bytes is None or not self.memory_total_bytes:
            return None
        return 100.0 * self.memory_used_bytes / self.memory_total_bytes


class _DeviceLost(Exception):
    pass


class GpuProbe:
    """Samples every GPU the reader lists; with no reader, says why once and samples nothing."""

    def __init__(
        self,
        reader: NvmlReader | None,
        *,
        now: Callable[[], datetime] = utcnow,
        unavailable_reason: str | None = None,
    ) -> None:
        self._reader = reader
        self._now = now
        self.unavailable_reason = unavailable_reason
        self._present: dict[str, str] = {}  # uuid → name, of the devices in the last sample
        self._sampled_once = False
        self._failing: set[tuple[str, str]] = set()  # (uuid, field) logged as unreadable
        self._count_failing = False

    @classmethod
    def open(
        cls,
        reader_factory: Callable[[], NvmlReader] = PynvmlReader,
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> GpuProbe:
        """A probe on a fresh reader, or an unavailable one when NVML cannot be had."""
        try:
            reader = reader_factory()
        except ImportError as exc:
            return cls.unavailable(f"the NVML bindings (nvidia-ml-py) are not installed: {exc}")
        except NvmlCallError as exc:
            return cls.unavailable(f"NVML did not initialise ({exc}): no NVIDIA driver or GPU")
        return cls(reader, now=now)

    @classmethod
    def unavailable(cls, reason: str, *, now: Callable[[], datetime] = utcnow) -> GpuProbe:
        """A probe that logs `reason` now, once, and returns no samples."""
        logger.warning("GPU probe disabled, no GPU metrics will be recorded: %s", reason)
        return cls(None, now=now, unavailable_reason=reason)

    @property
    def available(self) -> bool:
        return self._reader is not None

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close()
            except NvmlCallError as exc:
                logger.warning("GPU probe: NVML shutdown failed: %s", exc)

    def sample(self) -> list[GpuSample]:
        if self._reader is None:
            return []
        try:
            count = self._reader.device_count()
        except NvmlCallError as exc:
            if not self._count_failing:
                logger.warning("GPU probe: cannot count devices (%s); retrying each sample", exc)
            self._count_failing = True
            return []
        self._count_failing = False
        ts = self._now()
        samples = []
        for index in range(count):
            try:
                samples.append(self._sample_device(self._reader, index, ts))
            except _DeviceLost:
                continue
        self._note_devices(samples)
        return samples

    def _sample_device(self, reader: NvmlReader, index: int, ts: datetime) -> GpuSample:
        try:
            uuid = reader.device_uuid(index)
            name = reader.device_name(index)
        except NvmlCallError as exc:
            raise _DeviceLost from exc
        memory = self._field(uuid, index, "memory", reader.memory_bytes)
        power_mw = self._field(uuid, index, "power", reader.power_mw)
        processes = self._field(uuid, index, "processes", reader.process_memory)
        return GpuSample(
            ts=ts,
            index=index,
            uuid=uuid,
            name=name,
            utilization_percent=self._field(uuid, index, "utilization", reader.utilization_percent),
            memory_used_bytes=memory[0] if memory else None,
            memory_total_bytes=memory[1] if memory else None,
            temperature_c=self._field(uuid, index, "temperature", reader.temperature_c),
            power_w=power_mw / 1000.0 if power_mw is not None else None,
            processes=(
                tuple(GpuProcessMemory(pid, used) for pid, used in processes)
                if processes is not None
                else None
            ),
        )

    def _field(self, uuid: str, index: int, field: str, read: Callable[[int], T]) -> T | None:
        try:
            value = read(index)
        except NvmlCallError as exc:
            if exc.code == NVML_ERROR_GPU_IS_LOST:
                raise _DeviceLost from exc
            if (uuid, field) not in self._failing:
                self._failing.add((uuid, field))
                if exc.not_supported:
                    logger.info("GPU %d (%s): NVML does not support %s here", index, uuid, field)
                else:
                    logger.warning("GPU %d (%s): cannot read %s: %s", index, uuid, field, exc)
            return None
        self._failing.discard((uuid, field))
        return value

    def _note_devices(self, samples: list[GpuSample]) -> None:
        present = {s.uuid: s.name for s in samples}
        if not self._sampled_once:
            self._sampled_once = True
            if present:
                logger.info("GPU probe: %s", ", ".join(f"{n} ({u})" for u, n in present.items()))
            else:
                logger.warning("GPU probe: NVML lists no GPU")
        else:
            for uuid in self._present.keys() - present.keys():
                logger.warning("GPU probe: %s (%s) is gone", self._present[uuid], uuid)
            for uuid in present.keys() - self._present.keys():
                logger.info("GPU probe: %s (%s) appeared", present[uuid], uuid)
        self._present = present
