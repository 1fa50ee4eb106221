# SPDX-License-Identifier: MIT
"""cffi builder of cuse_vmgenid._cuse (API mode, against libfuse3), named
by setup.py's cffi_modules; with decl/, a build-time file: in the sdist,
not in the wheel (tests/host/test_packages.py).

The C is in native/shim/: translation units with their own headers,
compiled with -Wall -Wextra -Werror beside the module cffi generates.
cffi's cdef reads those headers themselves, less their preprocessor lines
(one home for each declaration and constant); decl/*.h hold only what the
shim does not declare: libfuse's API, the callbacks into Python,
signalfd, the ioctl numbers the daemon answers, prctl."""

import glob
import os
import re
import shlex
import subprocess

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
DECL = os.path.join(HERE, "decl")
TOP = os.path.dirname(os.path.dirname(HERE))
# Relative to the top of the tree (setuptools wants relative sources).
SHIM = os.path.join("native", "shim")
# cdef order: each file after those whose types it names.
DECLS = ("fuse.h", "callbacks.h", "signalfd.h", "poll.h", "vmgenid.h",
         "prctl.h")
SHIM_HEADERS = ("guid.h", "kmsg.h", "page.h", "statefile.h", "vmclock.h",
                "state.h", "publisher.h", "cuse_reply.h", "guidpoll.h",
                "transport.h", "session.h")
# VMGENID_SHIM_TESTING=1: the host tests' build (make -C native
# testing-shim), with the hooks of native/shim/testing.h; never the
# package's.
TESTING = os.environ.get("VMGENID_SHIM_TESTING") == "1"
if TESTING:
    SHIM_HEADERS += ("testing.h",)
WARNINGS = ["-Wall", "-Wextra", "-Werror"]
# "#define NAME value": cffi takes integer constants as "NAME ...".
DEFINE = re.compile(r"^#define\s+(\w+)\s+.*$")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def shim_cdef(header: str) -> str:
    """A native/shim header as cdef: its #define constants kept, its other
    preprocessor lines (guards, includes) dropped."""
    lines = []
    for line in _read(os.path.join(TOP, SHIM, header)).splitlines():
        define = DEFINE.match(line)
        if define:
            if not define.group(1).endswith("_H"):
                lines.append(f"#define {define.group(1)} ...")
        elif not line.startswith("#"):
            lines.append(line)
    return "\n".join(lines) + "\n"


def _pkg_config(*args: str) -> list[str]:
    try:
        out = subprocess.run(["pkg-config", *args, "fuse3"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        # The one missing piece a fresh machine usually has: say which.
        raise SystemExit("cuse-vmgenid: pkg-config finds no fuse3: install "
                         "libfuse3-dev and pkg-config (Debian: apt install "
                         "libfuse3-dev pkg-config gcc python3-dev)") from None
    return shlex.split(out)


def shim_sources() -> list[str]:
    """native/shim/*.c, relative to the top of the tree."""
    return sorted(os.path.relpath(path, TOP) for path in
                  glob.glob(os.path.join(TOP, SHIM, "*.c")))


ffibuilder = FFI()
ffibuilder.cdef("".join(_read(os.path.join(DECL, name)) for name in DECLS)
                + "".join(shim_cdef(header) for header in SHIM_HEADERS))
ffibuilder.set_source(
    "cuse_vmgenid._cuse",
    "#define FUSE_USE_VERSION 31\n"
    "#include <signal.h>\n"
    "#include <sys/signalfd.h>\n"
    "#include <sys/prctl.h>\n"
    "#include <fuse_lowlevel.h>\n"
    "#include <cuse_lowlevel.h>\n"
    "#include <linux/vmgenid.h>\n"
    + "".join(f'#include "{header}"\n' for header in SHIM_HEADERS),
    sources=shim_sources(),
    # native/include: the device's own <linux/vmgenid.h>.
    include_dirs=[os.path.join(TOP, SHIM),
                  os.path.join(TOP, "native", "include")],
    define_macros=[("VMGENID_TESTING", "1")] if TESTING else [],
    extra_compile_args=_pkg_config("--cflags") + WARNINGS
    + shlex.split(os.environ.get("VMGENID_SHIM_CFLAGS", "")),
    extra_link_args=_pkg_config("--libs")
    + shlex.split(os.environ.get("VMGENID_SHIM_LDFLAGS", "")),
)

if __name__ == "__main__":
    os.chdir(TOP)
    ffibuilder.compile(verbose=True)
