# SPDX-License-Identifier: MIT
"""Boot a guest image in QEMU and stream its console."""

import codecs
import os
import select
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .console import Console
from .images import GuestImage
from .rootimage import RootImages

# Quiet, but panics and oopses raise the console loglevel themselves.
KERNEL_ARGS = "console=ttyS0 loglevel=1 panic=-1"
# A panicking kernel reboots at once (panic=-1, -no-reboot); allow it
# this long to say why, and a finished guest this long to power off.
GRACE_SECONDS = 10


QEMU = ("qemu-system-x86_64",)     # the machine's own


def qemu_command(image: GuestImage, kernel_args: str, *, mem_mb: int,
                 guid: str | None, block_root: RootImages | None = None,
                 script: Path | None = None,
                 systemd: bool = False, qemu: Sequence[str] = QEMU,
                 devices: Sequence[str] = ()) -> list[str]:
    """The whole QEMU command line, in one place so that saving and
    restoring a guest can reuse it.  The root is the host's over 9p, or
    with @block_root the read-only squashfs disks (9p blocks migration),
    the guest's script (init.sh) then coming from the file @script via
    fw_cfg; with @systemd too, systemd is the guest's init and runs the
    script from a unit.  @guid: the vmgenid device's, or None for none.
    @qemu: the command that runs qemu-system-x86_64 (sidqemu.py's, for
    devices the machine's own lacks); @devices: more -device values."""
    if block_root is None:
        if systemd:
            raise ValueError("systemd as init needs the block root")
        root = ["-virtfs", "local,path=/,mount_tag=hostroot,"
                "security_model=none,readonly=on,multidevs=remap"]
    else:
        kernel_args = f"{kernel_args} vmgenid.root=block".strip()
        if systemd:
            kernel_args += " vmgenid.init=systemd"
        root = [arg for disk in [block_root.system, block_root.repo]
                for arg in ["-drive", f"file={disk},if=virtio,readonly=on,"
                            "format=raw"]]
        root += ["-fw_cfg", f"name=opt/vmgenid/script,file={script}"]
    return [
        *qemu, "-nodefaults", "-no-user-config",
        "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2",
        "-m", str(mem_mb), "-display", "none", "-serial", "stdio",
        "-no-reboot",
        "-kernel", str(image.vmlinuz), "-initrd", str(image.initramfs),
        "-append", f"{KERNEL_ARGS} {kernel_args}",
        *root,
        *([] if guid is None else ["-device", f"vmgenid,guid={guid}"]),
        *(arg for device in devices for arg in ["-device", device]),
    ]


def run_qemu(command: list[str], console: Console, timeout: float):
    """Run QEMU, feeding its console to @console, until it exits.
    Returns its exit status, or None if it had to be killed: at @timeout,
    or GRACE_SECONDS after the guest finished or panicked."""
    deadline = time.monotonic() + timeout
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    qemu = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE)
    try:
        while True:
            now = time.monotonic()
            if console.panicked or console.exit_code is not None:
                deadline = min(deadline, now + GRACE_SECONDS)
            if not select.select([qemu.stdout], [], [],
                                 max(0, deadline - now))[0]:
                return None
            data = os.read(qemu.stdout.fileno(), 65536)
            if not data:
                break
            console.feed(decoder.decode(data))
        console.feed(decoder.decode(b"", final=True))
        console.close()
        return qemu.wait()
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
        qemu.stdout.close()
