# SPDX-License-Identifier: MIT
"""The GUID's address from QEMU's fw_cfg: the file etc/vmgenid_addr.

The firmware writes the guest-physical address of the GUID (8 bytes,
little-endian) there for QEMU; the qemu_fw_cfg module shows it at
/sys/firmware/qemu_fw_cfg/by_name/etc/vmgenid_addr/raw (root only).
"""

import os
import shutil
import subprocess

from . import guid
from .base import SourceUnavailable

FW_CFG_DIR = "/sys/firmware/qemu_fw_cfg"
ADDR_FILE = "by_name/etc/vmgenid_addr/raw"
MODULE = "qemu_fw_cfg"
ORIGIN = "fw_cfg etc/vmgenid_addr"     # how the address was read, for the log


def _load_module() -> str:
    """modprobe qemu_fw_cfg; returns what happened, for the reason."""
    modprobe = shutil.which("modprobe") or next(
        (p for p in ("/usr/sbin/modprobe", "/sbin/modprobe")
         if os.path.exists(p)), None)
    if modprobe is None:
        return f"no modprobe to load {MODULE}"
    try:
        done = subprocess.run([modprobe, MODULE], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"modprobe {MODULE}: {err}"
    if done.returncode != 0:
        return (f"modprobe {MODULE} exited {done.returncode}: "
                f"{done.stderr.strip()}")
    return f"{MODULE} loaded"


def locate(root: str = FW_CFG_DIR, load: bool = True) -> int:
    """The GUID's physical address from fw_cfg, or SourceUnavailable."""
    if not os.path.isdir(root):
        tried = _load_module() if load else "not loading modules"
        if not os.path.isdir(root):
            raise SourceUnavailable(f"no {root} ({tried}): not QEMU, or a "
                                    "kernel without CONFIG_FW_CFG_SYSFS")
    path = os.path.join(root, ADDR_FILE)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        if not os.path.isdir(os.path.join(root, "by_name")):
            raise SourceUnavailable(f"no {root}/by_name (kernel without "
                                    "CONFIG_FW_CFG_SYSFS names)") from None
        raise SourceUnavailable("fw_cfg has no etc/vmgenid_addr: QEMU runs "
                                "without -device vmgenid") from None
    except OSError as err:
        raise SourceUnavailable(f"cannot read {path}: {err.strerror}"
                                ) from None
    if len(raw) != 8:
        raise SourceUnavailable(f"{path}: {len(raw)} bytes, expected 8")
    address = int.from_bytes(raw, "little")
    if address == 0:
        raise SourceUnavailable("etc/vmgenid_addr is 0: the firmware has not "
                                "allocated the GUID")
    return address


def mapped_guid() -> guid.MappedGuid:
    """The GUID where fw_cfg says it is, mapped; SourceUnavailable says
    why not."""
    return guid.map_guid("fwcfg", locate(), ORIGIN)


def open_tier(poll_interval_ms: int):
    """The tier fwcfg: the GUID at the address fw_cfg gives (guid.py);
    SourceUnavailable says why not."""
    return guid.open_tier(mapped_guid(), poll_interval_ms)
