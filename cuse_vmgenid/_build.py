# SPDX-License-Identifier: MIT
"""cffi builder of cuse_vmgenid._cuse (API mode, against libfuse3)."""

import os
import shlex
import subprocess

from cffi import FFI

DECL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "decl")


def _read(name: str) -> str:
    with open(os.path.join(DECL, name)) as f:
        return f.read()


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


ffibuilder = FFI()
ffibuilder.cdef(_read("fuse.h") + _read("callbacks.h") + _read("page.h")
               + _read("signalfd.h") + _read("statefile.h")
               + _read("armedbump.h") + _read("guidpoll.h")
               + _read("vmclock.h"))
ffibuilder.set_source(
    "cuse_vmgenid._cuse",
    "#define FUSE_USE_VERSION 31\n"
    "#include <endian.h>\n"
    "#include <errno.h>\n"
    "#include <fcntl.h>\n"
    "#include <limits.h>\n"
    "#include <poll.h>\n"
    "#include <stdio.h>\n"
    "#include <pthread.h>\n"
    "#include <setjmp.h>\n"
    "#include <stdint.h>\n"
    "#include <stdlib.h>\n"
    "#include <string.h>\n"
    "#include <signal.h>\n"
    "#include <time.h>\n"
    "#include <unistd.h>\n"

    "#include <sys/ioctl.h>\n"
    "#include <sys/signalfd.h>\n"
    "#include <sys/stat.h>\n"
    "#include <linux/random.h>\n"
    "#include <fuse_lowlevel.h>\n"
    "#include <cuse_lowlevel.h>\n"
    # page.h, like vmclock.h, is plain C: its typedef serves both.
    + _read("page.h") + _read("page.c") + _read("statefile.c")
    # vmclock.h, like armedbump.h, is plain C: it serves both.
    + _read("vmclock_abi.h") + _read("vmclock.h") + _read("vmclock.c")
    # armedbump.h defines types as well: plain C, so it serves both.
    + _read("armedbump.h") + _read("armedbump.c") + _read("guidpoll.c"),
    extra_compile_args=_pkg_config("--cflags"),
    extra_link_args=_pkg_config("--libs"),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
