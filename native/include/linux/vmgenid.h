/* SPDX-License-Identifier: GPL-2.0+ WITH Linux-syscall-note */
/*
 * VM Generation ID device, /dev/vmgenid (cuse-vmgenid).
 *
 * Userspace ABI of the vmgenid v3 kernel patch, served by a CUSE daemon.
 * The device contract is docs/interface.rst (installed in
 * /usr/share/doc/cuse-vmgenid-dev/); differences from v3 are noted below.
 *
 * read(fd, &u32, 4) returns the counter once the watcher is outdated
 * (blocks until then, EAGAIN with O_NONBLOCK); write(fd, &u32, 4) with the
 * current counter acknowledges it.  Any error other than EINTR, EAGAIN or
 * EINVAL means the daemon went away: treat it as a generation change,
 * then reopen.
 */
#ifndef _UAPI_LINUX_VMGENID_H
#define _UAPI_LINUX_VMGENID_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define VMGENID_IOCTL 0x2d

/*
 * Returns the number of outdated watchers (>= 0).
 */
#define VMGENID_GET_OUTDATED_WATCHERS	_IO(VMGENID_IOCTL, 1)

/*
 * arg: timeout in milliseconds (an integer, not a pointer), 0 = none.
 * Returns 0 once no watcher is outdated.
 * EINTR at once if the caller is outdated, when a change makes it outdated
 * while waiting, or on a signal (even under SA_RESTART);
 * ETIME on timeout (v3 returned EINTR).
 */
#define VMGENID_WAIT_WATCHERS		_IO(VMGENID_IOCTL, 2)

/*
 * Counter + 1; the argument is ignored.  Returns 0.
 * EACCES without CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN in the daemon's
 * user namespace.
 */
#define VMGENID_FORCE_GEN_UPDATE	_IO(VMGENID_IOCTL, 3)

/*
 * Project extension: "the hardware may have changed".  The daemon checks
 * the GUID now and bumps iff it changed (always bumps with no GUID
 * source).  Returns 1 if it bumped, else 0.
 * EACCES: as VMGENID_FORCE_GEN_UPDATE.
 */
#define VMGENID_NOTIFY			_IO(VMGENID_IOCTL, 4)

/*
 * arg: pointer to a __u32 min.  Counter becomes max(min, counter + 1)
 * (a restore from a snapshot at generation S passes S + 1).  Returns 0.
 * EACCES: as VMGENID_FORCE_GEN_UPDATE;
 * EOVERFLOW if the result would exceed 0x7fffffff.
 */
#define VMGENID_FORCE_GEN_UPDATE_MIN	_IOW(VMGENID_IOCTL, 5, __u32)

#endif /* _UAPI_LINUX_VMGENID_H */
