# SPDX-License-Identifier: MIT
"""The client's build: metadata in pyproject.toml; here the version from
git (vmgenid/version.py, read by path) and the package data."""

import importlib.util
import os

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _version() -> str:
    spec = importlib.util.spec_from_file_location(
        "vmgenid_version", os.path.join(HERE, "vmgenid", "version.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        return module.build_version(os.path.join(HERE, "vmgenid"))
    except module.TagMismatch as e:
        raise SystemExit(str(e)) from None


setup(
    version=_version(),
    packages=["vmgenid"],
    # PEP 561: the package's annotations are for its users' type checkers.
    package_data={"vmgenid": ["py.typed"]},
)
