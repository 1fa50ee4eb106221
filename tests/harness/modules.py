# SPDX-License-Identifier: MIT
"""Kernel modules the guest needs, read from an unpacked kernel package.

Dependencies come from each module's .modinfo "depends=" (what depmod reads
too), so the host needs no kmod.
"""

import gzip
import lzma
import struct
import subprocess
from pathlib import Path

from .cache import HarnessError

# What the guest's /init needs; their dependencies follow automatically.
# virtio_blk and squashfs: the block root of guests that are saved
# (rootimage.py; lz4 is built in).
NEEDED = ["virtio_pci", "9pnet_virtio", "9p", "overlay", "cuse",
          "qemu_fw_cfg", "virtio_blk", "squashfs"]


def module_name(path: Path) -> str:
    return path.name.split(".ko")[0].replace("-", "_")


def read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".ko"):
        return data
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko.zst"):
        return subprocess.run(["zstd", "-dc"], input=data, check=True,
                              capture_output=True).stdout
    raise HarnessError(f"unknown module compression: {path}")


def module_depends(image: bytes) -> list[str]:
    """The "depends=" list in the .modinfo section of an ELF64 module."""
    shoff, = struct.unpack_from("<Q", image, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", image, 0x3a)

    def section(index):
        name, _, _, _, offset, size = struct.unpack_from(
            "<IIQQQQ", image, shoff + index * shentsize)
        return name, image[offset:offset + size]

    names = section(shstrndx)[1]
    for index in range(shnum):
        name, data = section(index)
        if names[name:names.index(b"\0", name)] != b".modinfo":
            continue
        for entry in data.split(b"\0"):
            if entry.startswith(b"depends="):
                return [d for d in entry[8:].decode().split(",") if d]
        return []
    raise HarnessError("module without .modinfo")


def modules_to_load(moddir: Path, needed: list[str] = NEEDED
                    ) -> list[tuple[str, bytes]]:
    """@needed and their dependencies from @moddir (lib/modules/<release>),
    decompressed, in insmod order; built-in ones are skipped."""
    files = {module_name(p): p for p in moddir.rglob("*.ko*")}
    builtin = {module_name(Path(line))
               for line in (moddir / "modules.builtin").read_text().split()}
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name):
        if name in seen or name in builtin:
            return
        seen.add(name)
        if name not in files:
            raise HarnessError(f"module {name} is missing in {moddir}")
        image = read_module(files[name])
        for dep in module_depends(image):
            visit(dep)
        order.append((name, image))

    for name in needed:
        visit(name)
    return order
