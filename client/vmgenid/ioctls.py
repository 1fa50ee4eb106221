# SPDX-License-Identifier: MIT
"""ioctl numbers of /dev/vmgenid (native/include/linux/vmgenid.h; a host
test compares them), in pure Python: a client needs no compiled module.
The daemon answers these same numbers (cuse_vmgenid.device.transport)."""

_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = 8
_IOC_SIZESHIFT = 16
_IOC_DIRSHIFT = 30
_IOC_WRITE = 1


def _ioc(direction: int, kind: int, nr: int, size: int) -> int:
    return ((direction << _IOC_DIRSHIFT) | (kind << _IOC_TYPESHIFT)
            | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT))


VMGENID_IOCTL = 0x2D
GET_OUTDATED_WATCHERS = _ioc(0, VMGENID_IOCTL, 1, 0)
WAIT_WATCHERS = _ioc(0, VMGENID_IOCTL, 2, 0)
FORCE_GEN_UPDATE = _ioc(0, VMGENID_IOCTL, 3, 0)
NOTIFY = _ioc(0, VMGENID_IOCTL, 4, 0)
FORCE_GEN_UPDATE_MIN = _ioc(_IOC_WRITE, VMGENID_IOCTL, 5, 4)
