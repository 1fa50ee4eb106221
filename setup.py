# SPDX-License-Identifier: MIT
"""The build: metadata in pyproject.toml; here what it cannot say (the
version from git, the cffi shim, the package data).  What else the sdist
carries: MANIFEST.in."""

import importlib.util
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _version() -> str:
    # By path: importing the package needs what is being built.
    spec = importlib.util.spec_from_file_location(
        "cuse_vmgenid_version", os.path.join(HERE, "cuse_vmgenid",
                                             "version.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        return module.build_version()
    except module.TagMismatch as e:
        raise SystemExit(str(e)) from None


setup(
    version=_version(),
    packages=find_packages(include=["cuse_vmgenid", "cuse_vmgenid.*"]),
    # PEP 561: the package's annotations are for its users' type checkers.
    package_data={"cuse_vmgenid": ["py.typed"]},
    cffi_modules=["native/cffi/builder.py:ffibuilder"],
)
