"""A fake ``amdsmi`` module (AMD SMI's Python binding) for tests, like harness_fixtures.FakeNvml.

Implements the calls bench.power_sources / bench.system make. Socket power per GPU is constant; the
energy accumulator is its exact integral on a shared clock, in counts of ``counter_resolution`` uJ.
"""

from __future__ import annotations

import enum
from typing import Any, Callable


class AmdSmiLibraryException(Exception):
    """Stands in for amdsmi.AmdSmiLibraryException."""


class AmdSmiInitFlags(enum.IntEnum):
    INIT_ALL_PROCESSORS = 0xFFFFFFFF
    INIT_AMD_GPUS = 0x2


class AmdSmiTemperatureType(enum.IntEnum):
    EDGE = 0
    HOTSPOT = 1


class AmdSmiTemperatureMetric(enum.IntEnum):
    CURRENT = 0


class AmdSmiClkType(enum.IntEnum):
    SYS = 0
    GFX = 0


class AmdSmiIoLinkType(enum.IntEnum):
    PCIEXPRESS = 1
    XGMI = 2


class FakeAmdSmi:
    """amdsmi-shaped module over ``len(watts)`` GPUs."""

    AmdSmiLibraryException = AmdSmiLibraryException
    AmdSmiInitFlags = AmdSmiInitFlags
    AmdSmiTemperatureType = AmdSmiTemperatureType
    AmdSmiTemperatureMetric = AmdSmiTemperatureMetric
    AmdSmiClkType = AmdSmiClkType
    AmdSmiIoLinkType = AmdSmiIoLinkType

    def __init__(
        self,
        watts: list[float],
        clock: Callable[[], float],
        *,
        market_name: str = "AMD Instinct MI300X",
        counter_supported: bool = True,
        init_error: str | None = None,
        legacy_keys: bool = False,  # ROCm 6.0-6.1 bindings call the accumulator "power"
        resolution_uj: float = 15.259,
    ) -> None:
        self.watts = list(watts)
        self.clock = clock
        self.market_name = market_name
        self.counter_supported = counter_supported
        self.init_error = init_error
        self.legacy_keys = legacy_keys
        self.resolution_uj = resolution_uj
        self.fail_power = False
        self._t0 = clock()
        self.initialised = False
        self.init_flags: Any = None

    def amdsmi_init(self, flags: Any = None) -> None:
        if self.init_error:
            raise AmdSmiLibraryException(self.init_error)
        self.init_flags = flags
        self.initialised = True

    def amdsmi_shut_down(self) -> None:
        self.initialised = False

    def _check(self) -> None:
        if not self.initialised:
            raise AmdSmiLibraryException("AMDSMI_STATUS_NOT_INIT")

    def amdsmi_get_processor_handles(self) -> list[str]:
        self._check()
        return [f"handle-{i}" for i in range(len(self.watts))]

    @staticmethod
    def _index(handle: str) -> int:
        return int(handle.rsplit("-", 1)[1])

    def amdsmi_get_energy_count(self, handle: str) -> dict[str, Any]:
        self._check()
        if not self.counter_supported:
            raise AmdSmiLibraryException("AMDSMI_STATUS_NOT_SUPPORTED")
        joules = self.watts[self._index(handle)] * (self.clock() - self._t0)
        counts = int(round((1_000_000.0 + joules) * 1e6 / self.resolution_uj))
        key = "power" if self.legacy_keys else "energy_accumulator"
        return {key: counts, "counter_resolution": self.resolution_uj, "timestamp": int(self.clock() * 1e9)}

    def amdsmi_get_power_info(self, handle: str) -> dict[str, Any]:
        self._check()
        if self.fail_power:
            raise AmdSmiLibraryException("AMDSMI_STATUS_DRM_ERROR")
        # MI300X reports current power; the average is "N/A" there (older parts: the reverse)
        return {"current_socket_power": self.watts[self._index(handle)], "average_socket_power": "N/A",
                "gfx_voltage": 0, "soc_voltage": 0, "mem_voltage": 0, "power_limit": 750}

    def amdsmi_get_temp_metric(self, handle: str, sensor: Any, metric: Any) -> int:
        return 50 + self._index(handle)

    def amdsmi_get_clock_info(self, handle: str, clk: Any) -> dict[str, Any]:
        return {"clk": 2100, "min_clk": 500, "max_clk": 2100}

    def amdsmi_get_gpu_device_uuid(self, handle: str) -> str:
        return f"{self._index(handle):02x}ff74a1-0000-1000-80aa-c7a6c0b1d2e{self._index(handle)}"

    def amdsmi_get_gpu_asic_info(self, handle: str) -> dict[str, Any]:
        return {"market_name": self.market_name, "vendor_id": "0x1002", "device_id": "0x74a1", "target_graphics_version": "gfx942"}

    def amdsmi_get_gpu_vram_info(self, handle: str) -> dict[str, Any]:
        return {"vram_type": "HBM3", "vram_size": 196592}  # MB, as MI300X reports

    def amdsmi_get_gpu_driver_info(self, handle: str) -> dict[str, Any]:
        return {"driver_name": "amdgpu", "driver_version": "6.10.5", "driver_date": "2015/01/01 00:00"}

    def amdsmi_get_gpu_device_bdf(self, handle: str) -> str:
        return f"0000:{0x0c + 0x10 * self._index(handle):02x}:00.0"

    def amdsmi_get_power_cap_info(self, handle: str) -> dict[str, Any]:
        return {"power_cap": 750_000_000, "default_power_cap": 750_000_000}  # microwatts

    def amdsmi_topo_get_link_type(self, a: str, b: str) -> dict[str, Any]:
        return {"hops": 1, "type": AmdSmiIoLinkType.XGMI}

    def amdsmi_get_lib_version(self) -> dict[str, Any]:
        return {"major": 25, "minor": 3, "release": 0}
