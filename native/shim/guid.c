// SPDX-License-Identifier: MIT
/* The GUID's spelling, its load, and the kernel's line for a VM fork. */
#include "guid.h"

/*
 * random.c's add_vmfork_randomness(): pr_notice("crng reseeded due to
 * virtual machine fork\n") under pr_fmt "random: ", since 5.18 (read in
 * the images of 6.1, 6.12 and 7.2 as "\0015random: crng reseeded ...").
 */
const char vmgenid_vmfork_line[] =
	"random: crng reseeded due to virtual machine fork";

/*
 * The GUID at @guid as it is now: the hypervisor's page, which changes
 * under us (a restore), so each byte is loaded from memory here.
 */
void vmgenid_guid_load(unsigned char *dst, const void *guid)
{
	const volatile unsigned char *now = guid;
	int i;

	for (i = 0; i < VMGENID_GUID_SIZE; i++)
		dst[i] = now[i];
}

/* The GUID as QEMU's guid= spells it: the first three fields are LE. */
void vmgenid_guid_format(const unsigned char *raw, char *out)
{
	static const unsigned char order[VMGENID_GUID_SIZE] = {
		3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15
	};
	static const char hex[] = "0123456789abcdef";
	int i;

	for (i = 0; i < VMGENID_GUID_SIZE; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*out++ = '-';
		*out++ = hex[raw[order[i]] >> 4];
		*out++ = hex[raw[order[i]] & 15];
	}
	*out = '\0';
}
