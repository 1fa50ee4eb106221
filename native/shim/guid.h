/* SPDX-License-Identifier: MIT */
/*
 * The constants C and Python share: Python reads them from the compiled
 * module (lib.VMGENID_GUID_SIZE, ffi.string(lib.vmgenid_vmfork_marker)).
 */
#ifndef VMGENID_GUID_H
#define VMGENID_GUID_H

#define VMGENID_GUID_SIZE 16
#define VMGENID_GUID_TEXT 36		/* as vmgenid_guid_format() spells it */

/* What the kernel's random.c logs on every VM fork (5.18 and later). */
extern const char vmgenid_vmfork_marker[];

void vmgenid_guid_format(const unsigned char *raw, char *out);

#endif /* VMGENID_GUID_H */
