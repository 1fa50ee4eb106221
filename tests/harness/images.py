# SPDX-License-Identifier: MIT
"""Guest images in the cache: <cache>/<release>/{vmlinuz,initramfs-*}."""

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .cache import CACHE_DIR, write_atomically
from .initramfs import build_initramfs, initramfs_key
from .kernels import flavour_of, kernel_release, unpack_kernel
from .modules import NEEDED, modules_to_load


@dataclass(frozen=True)
class GuestImage:
    release: str
    vmlinuz: Path
    initramfs: Path


def prepare(flavour: str) -> GuestImage:
    """The image of @flavour (kernels.FLAVOURS), built if missing or
    stale."""
    release = kernel_release(flavour)
    needed = NEEDED + list(flavour_of(flavour).modules)
    imagedir = CACHE_DIR / release
    image = GuestImage(release, imagedir / "vmlinuz", imagedir /
                       f"initramfs-{initramfs_key(release, needed)}.cpio.gz")
    if image.vmlinuz.is_file() and image.initramfs.is_file():
        return image

    print(f"harness: building the {release} guest image", flush=True)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    unpacked = Path(tempfile.mkdtemp(dir=CACHE_DIR, prefix=".unpack-"))
    try:
        kernel = unpack_kernel(flavour, release, unpacked)
        write_atomically(image.vmlinuz, kernel.vmlinuz.read_bytes())
        modules = modules_to_load(kernel.moddir, needed)
        write_atomically(image.initramfs, build_initramfs(release, modules))
    finally:
        shutil.rmtree(unpacked)
    for stale in imagedir.glob("initramfs-*.cpio.gz"):
        if stale != image.initramfs:
            stale.unlink(missing_ok=True)
    return image
