"""ecg-gateway: the bridge between ECG devices and a cardiac monitoring center."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ecg-gateway")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
