"""What every benchmark prints first: the machine and the versions."""

import os
import platform

import jax


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(**versions) -> str:
    """Two lines: CPU, cores and JAX devices; Python, jax and the given package versions."""
    extra = "".join(f" | {name} {v}" for name, v in versions.items())
    return (
        f"machine: {cpu_name()}, {os.cpu_count()} cores | devices: {jax.devices()}\n"
        f"python {platform.python_version()} | jax {jax.__version__}{extra}"
    )
