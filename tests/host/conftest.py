# SPDX-License-Identifier: MIT
"""VMGENID_SHIM: the path of another build of cuse_vmgenid._cuse for the host
tests to import instead of the tree's: tools/run-tests' sanitized suite
builds one with ASan and UBSan (make -C native sanitize-shim) and runs this
suite with it, the ASan runtime in LD_PRELOAD (an instrumented library must
find it loaded first)."""

import importlib.util
import os
import sys

import cuse_vmgenid

SHIM = os.environ.get("VMGENID_SHIM")
# What this process needed to load that build, read when it started (no
# leak report in ASAN_OPTIONS: Python keeps objects to its end).  Not for
# the tests' children: compilers, valgrind, a ThreadSanitizer build,
# sanitized helpers that do report leaks.
sanitizer_env: dict[str, str] = {}

if SHIM:
    assert "cuse_vmgenid._cuse" not in sys.modules, "imported too early"
    # Before any test module imports cuse_vmgenid._cuse: sys.modules is
    # where every later `from ._cuse import` finds it.
    _spec = importlib.util.spec_from_file_location("cuse_vmgenid._cuse",
                                                   SHIM)
    _shim = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_shim)
    sys.modules["cuse_vmgenid._cuse"] = _shim
    cuse_vmgenid._cuse = _shim
    sanitizer_env = {name: os.environ.pop(name)
                     for name in ("LD_PRELOAD", "ASAN_OPTIONS")
                     if name in os.environ}


def pytest_report_header():
    from cuse_vmgenid import _cuse
    return f"cuse_vmgenid._cuse: {_cuse.__file__}"
