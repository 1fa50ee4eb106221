# SPDX-License-Identifier: MIT
"""The build: metadata in pyproject.toml; here what it cannot say (the
version from git, the client it needs at that version, the cffi shim,
the package data).  What else the sdist carries: MANIFEST.in."""

import importlib.util
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _scheme():
    """The client's version.py (one release for both distributions), by
    path: the client need not be installed to build the daemon."""
    spec = importlib.util.spec_from_file_location(
        "vmgenid_version", os.path.join(HERE, "client", "vmgenid",
                                        "version.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _version(scheme) -> str:
    try:
        return scheme.build_version(os.path.join(HERE, "cuse_vmgenid"))
    except scheme.TagMismatch as e:
        raise SystemExit(str(e)) from None


scheme = _scheme()
setup(
    version=_version(scheme),
    # The client of the same release: the daemon imports the facts it
    # shares with it (ioctl numbers, the status files' format).  A public
    # version, so any build of it matches (PEP 440 ignores the local part).
    install_requires=["cffi>=1.15", f"vmgenid=={scheme.RELEASE}"],
    packages=find_packages(include=["cuse_vmgenid", "cuse_vmgenid.*"]),
    # PEP 561: the package's annotations are for its users' type checkers.
    package_data={"cuse_vmgenid": ["py.typed"]},
    cffi_modules=["native/cffi/builder.py:ffibuilder"],
)
