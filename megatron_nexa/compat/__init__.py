"""The one place that relies on private internals of other libraries: one module per library, each checking at
import that the installed version is one it was written for.

An installed version outside that range is an error (``UnsupportedVersion``), not a warning: these modules
replace library functions by name, and a patch applied to a release it was not written for can change results
without failing. ``NEXA_ALLOW_UNTESTED_VERSIONS=1`` turns the error into a warning, to try a new release.
"""
import os
import warnings
from importlib.metadata import PackageNotFoundError, version

from packaging.specifiers import SpecifierSet
from packaging.version import Version

ALLOW_UNTESTED = "NEXA_ALLOW_UNTESTED_VERSIONS"


class UnsupportedVersion(ImportError):
    pass


def require(package: str, supported: str) -> str:
    """The installed version of ``package``; an error (or, with ``NEXA_ALLOW_UNTESTED_VERSIONS=1``, a warning)
    naming the package, the version found and the range supported when it is outside ``supported``."""
    try:
        found = version(package)
    except PackageNotFoundError:
        raise UnsupportedVersion(f"{package} is not installed; megatron_nexa supports {package}{supported}") from None
    if SpecifierSet(supported).contains(Version(found), prereleases=True):
        return found
    message = (f"{package} {found} is installed; megatron_nexa's compat.{package.split('-')[0]} supports "
               f"{package}{supported} (it relies on private internals of the releases in that range)")
    if os.environ.get(ALLOW_UNTESTED) == "1":
        warnings.warn(message, stacklevel=2)
        return found
    raise UnsupportedVersion(f"{message}. Install a supported release, or set {ALLOW_UNTESTED}=1 to try this one.")
