# SPDX-License-Identifier: MIT
"""The guest's initramfs: static busybox, our /init and the modules."""

import gzip
import hashlib
import stat
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
INIT_SCRIPT = Path(__file__).with_name("init.sh")
# Mount points /init uses before it leaves the initramfs.
DIRS = ["bin", "dev", "proc", "sys", "host", "rw", "newroot", "lib",
        "lib/modules"]


class Cpio:
    """A "newc" cpio archive, as the kernel unpacks it; no root needed
    to add device nodes."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.ino = 0

    def add(self, name: str, mode: int, data: bytes = b"",
            rdev: tuple[int, int] = (0, 0)) -> None:
        self.ino += 1
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0,
                  rdev[0], rdev[1], len(name) + 1, 0]
        header = b"070701" + b"".join(b"%08x" % f for f in fields)
        self.parts += [header, name.encode(), b"\0", self.pad(110 + len(name) + 1),
                       data, self.pad(len(data))]

    @staticmethod
    def pad(length: int) -> bytes:
        return b"\0" * (-length % 4)

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return b"".join(self.parts)


def initramfs_key(release: str, needed: list[str]) -> str:
    """Names the initramfs after its inputs, so editing init.sh, the
    needed modules or busybox rebuilds it."""
    digest = hashlib.sha256()
    for part in [release.encode(), INIT_SCRIPT.read_bytes(),
                 BUSYBOX.read_bytes(), " ".join(needed).encode()]:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def build_initramfs(release: str, modules: list[tuple[str, bytes]]) -> bytes:
    """A gzipped cpio; /lib/modules/<release>/load.order lists the
    modules in insmod order."""
    archive = Cpio()
    moddir = f"lib/modules/{release}"
    for name in DIRS + [moddir]:
        archive.add(name, stat.S_IFDIR | 0o755)
    # The kernel opens the console before /init mounts devtmpfs.
    archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    archive.add("bin/busybox", stat.S_IFREG | 0o755, BUSYBOX.read_bytes())
    archive.add("init", stat.S_IFREG | 0o755, INIT_SCRIPT.read_bytes())
    for name, image in modules:
        archive.add(f"{moddir}/{name}.ko", stat.S_IFREG | 0o644, image)
    order = "".join(f"{name}\n" for name, _ in modules)
    archive.add(f"{moddir}/load.order", stat.S_IFREG | 0o644, order.encode())
    return gzip.compress(archive.finish(), compresslevel=6, mtime=0)
