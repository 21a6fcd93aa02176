"""nanobench: the harness that runs, measures, prices, signs and compares the nanochat workload."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nanobench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

RESULT_SCHEMA_VERSION = 1
