from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    VERSION = _version("voxarena")
except PackageNotFoundError:  # running from a source tree without an install
    VERSION = "0.0.0+source"
