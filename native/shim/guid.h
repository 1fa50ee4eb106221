/* SPDX-License-Identifier: MIT */
/*
 * The constants C and Python share: Python reads them from the compiled
 * module (lib.VMGENID_GUID_SIZE, ffi.string(lib.vmgenid_vmfork_line)).
 */
#ifndef VMGENID_GUID_H
#define VMGENID_GUID_H

#define VMGENID_GUID_SIZE 16
#define VMGENID_GUID_TEXT 36		/* as vmgenid_guid_format() spells it */

/*
 * The whole text of the record the kernel's random.c logs on every VM
 * fork (5.18 and later), and its priority: facility 0 (the kernel), level
 * 5 (KERN_NOTICE).
 */
extern const char vmgenid_vmfork_line[];
#define VMGENID_VMFORK_PRIO 5

void vmgenid_guid_format(const unsigned char *raw, char *out);
void vmgenid_guid_load(unsigned char *dst, const void *guid);

#endif /* VMGENID_GUID_H */
