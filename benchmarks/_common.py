"""What the benchmark scripts share: the CPU's name for their headers."""

from __future__ import annotations

import platform


def cpu_name() -> str:
    """The CPU model (``lscpu``'s model name, read from /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
