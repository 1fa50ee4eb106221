"""Debian kernel packages: pick a release, download and unpack it.

The packages are only ever unpacked into the cache, never installed.
"""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .cache import CACHE_DIR, HarnessError

# Flavour (CLI name) -> the kernel releases that flavour accepts.
FLAVOURS = {
    "6.1": r"6\.1\.0-[0-9]+-amd64",
    "6.12": r"6\.12\.[0-9]+\+deb12-amd64",
}
DEB_DIR = CACHE_DIR / "debs"


def version_key(release: str) -> list[int]:
    return [int(n) for n in re.findall(r"[0-9]+", release)]


def override_variable(flavour: str) -> str:
    return "VMGENID_KERNEL_" + flavour.replace(".", "_")


def kernel_release(flavour: str) -> str:
    """The newest release apt knows for @flavour, or the override."""
    if flavour not in FLAVOURS:
        raise HarnessError(f"unknown kernel flavour {flavour!r}; "
                           f"choose from {', '.join(FLAVOURS)}")
    pattern = FLAVOURS[flavour]
    override = os.environ.get(override_variable(flavour))
    if override:
        if not re.fullmatch(pattern, override):
            raise HarnessError(f"{override_variable(flavour)}={override} "
                               f"is not a {flavour} release")
        return override
    out = subprocess.run(
        ["apt-cache", "search", "--names-only", f"^linux-image-{pattern}$"],
        check=True, capture_output=True, text=True).stdout
    releases = [line.split()[0].removeprefix("linux-image-")
                for line in out.splitlines()]
    if not releases:
        raise HarnessError(f"apt knows no linux-image for {flavour}: "
                           "run apt-get update")
    return max(releases, key=version_key)


def kernel_deb(release: str) -> Path:
    """The .deb of @release, downloaded into the cache once."""
    package = f"linux-image-{release}"
    found = sorted(DEB_DIR.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    DEB_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=DEB_DIR) as tmp:
        print(f"harness: downloading {package}", flush=True)
        # _apt cannot write into root's cache: download as root.
        subprocess.run(["apt-get", "download", "-q",
                        "-o", "APT::Sandbox::User=root", package],
                       cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        deb, = Path(tmp).glob("*.deb")
        return Path(shutil.move(deb, DEB_DIR / deb.name))


def unpack_kernel(release: str, dest: Path) -> None:
    """Unpack the kernel package of @release into the empty dir @dest."""
    subprocess.run(["dpkg-deb", "-x", kernel_deb(release), dest], check=True)
    if not (dest / "boot" / f"vmlinuz-{release}").is_file():
        raise HarnessError(f"linux-image-{release} has no vmlinuz")
