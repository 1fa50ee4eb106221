# SPDX-License-Identifier: MIT
"""Debian kernel packages: pick a release, download and unpack it.

The packages are only ever unpacked into the cache, never installed.
Suites other than the machine's own come through aptsuite.py.
"""

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .aptsuite import Suite
from .cache import HarnessError


@dataclass(frozen=True)
class Flavour:
    suite: str | None       # None: the machine's own sources (bookworm)
    release: str            # regex of the kernel releases it accepts
    # The kernel's own vmgenid driver (5.18 and later): it reseeds its RNG
    # and logs "crng reseeded due to virtual machine fork" on a change.
    vmgenid_driver: bool = True
    # Modules the guest loads besides modules.NEEDED, for what only these
    # kernels have.
    modules: tuple[str, ...] = ()


# Flavour (CLI name) -> where its kernels come from.  "newest" is sid's
# newest at run time, so that CI follows sid.
FLAVOURS = {
    "5.10": Flavour("bullseye", r"5\.10\.0-[0-9]+-amd64",
                    vmgenid_driver=False),
    "6.1": Flavour(None, r"6\.1\.0-[0-9]+-amd64"),
    "6.12": Flavour(None, r"6\.12\.[0-9]+\+deb12-amd64"),
    # ptp_vmclock: the kernel's VMClock driver (/dev/vmclock0), for QEMU's
    # -device vmclock (sidqemu.py).
    "newest": Flavour("sid", r"[0-9]+\.[0-9]+[.0-9]*(\+deb[0-9]+)?-amd64",
                      modules=("ptp_vmclock",)),
}


def version_key(release: str) -> list[int]:
    return [int(n) for n in re.findall(r"[0-9]+", release)]


def override_variable(flavour: str) -> str:
    return "VMGENID_KERNEL_" + flavour.replace(".", "_")


def flavour_of(name: str) -> Flavour:
    if name not in FLAVOURS:
        raise HarnessError(f"unknown kernel flavour {name!r}; "
                           f"choose from {', '.join(FLAVOURS)}")
    return FLAVOURS[name]


def kernel_release(flavour: str) -> str:
    """The newest release apt knows for @flavour, or the override."""
    pattern = flavour_of(flavour).release
    override = os.environ.get(override_variable(flavour))
    if override:
        if not re.fullmatch(pattern, override):
            raise HarnessError(f"{override_variable(flavour)}={override} "
                               f"is not a {flavour} release")
        return override
    # Newer Debian kernels come as linux-binary-* (+ linux-modules-*);
    # linux-image-* is then a metapackage, if still there.
    names = Suite(flavour_of(flavour).suite).package_names(
        f"linux-(image|binary)-{pattern}")
    releases = {re.sub(r"^linux-(image|binary)-", "", name)
                for name in names}
    if not releases:
        raise HarnessError(f"apt knows no linux-image for {flavour}: "
                           "run apt-get update")
    return max(releases, key=version_key)


@dataclass(frozen=True)
class UnpackedKernel:
    vmlinuz: Path
    moddir: Path            # lib/modules/<release>


def unpack_kernel(flavour: str, release: str, dest: Path) -> UnpackedKernel:
    """Unpack the kernel @release of @flavour into the empty dir @dest:
    one linux-image package, or the split linux-binary, linux-modules
    and linux-base (modules.builtin) with everything under
    /usr/lib/modules/<release>."""
    suite = Suite(flavour_of(flavour).suite)
    if suite.package_names(re.escape(f"linux-binary-{release}")):
        packages = [f"linux-{part}-{release}"
                    for part in ["binary", "modules", "base"]]
    else:
        packages = [f"linux-image-{release}"]
    for package in packages:
        subprocess.run(["dpkg-deb", "-x", suite.download(package), dest],
                       check=True)
    for vmlinuz, moddir in [
            (f"boot/vmlinuz-{release}", f"lib/modules/{release}"),
            (f"usr/lib/modules/{release}/vmlinuz",
             f"usr/lib/modules/{release}")]:
        if (dest / vmlinuz).is_file():
            return UnpackedKernel(dest / vmlinuz, dest / moddir)
    raise HarnessError(f"{', '.join(packages)}: no vmlinuz")
