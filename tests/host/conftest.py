# SPDX-License-Identifier: MIT
"""The build of cuse_vmgenid._cuse the host tests import instead of the
tree's: one with the C test hooks of native/shim/testing.h, which the
package's never has (make -C native testing-shim, made here when its
inputs changed).  VMGENID_SHIM: another such build: tools/run-tests'
sanitized suite builds one with ASan and UBSan (make -C native
sanitize-shim) and runs this suite with it, the ASan runtime in
LD_PRELOAD (an instrumented library must find it loaded first)."""

import glob
import importlib.util
import os
import subprocess
import sys

import cuse_vmgenid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _testing_shim() -> str:
    subprocess.run(["make", "-s", "-C", os.path.join(REPO, "native"),
                    "testing-shim", f"PYTHON={sys.executable}"], check=True,
                   stdout=subprocess.DEVNULL)
    shim, = glob.glob(os.path.join(REPO, "native", "build", "testing",
                                   "shim", "cuse_vmgenid", "_cuse*.so"))
    return shim


# tools/run-tests' sanitized build, or None.
SANITIZED_SHIM = os.environ.get("VMGENID_SHIM")
SHIM = SANITIZED_SHIM or _testing_shim()
# What this process needed to load that build, read when it started (no
# leak report in ASAN_OPTIONS: Python keeps objects to its end).  Not for
# the tests' children: compilers, valgrind, a ThreadSanitizer build,
# sanitized helpers that do report leaks.
sanitizer_env: dict[str, str] = {}

if SHIM:     # always
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
