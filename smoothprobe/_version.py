"""The installed version, read once from the package metadata (pyproject.toml is the one source)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("smoothprobe")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
