// SPDX-License-Identifier: MIT
/*
 * vmclock-layout: our struct vmclock_abi (native/shim/vmclock_abi.h)
 * against the kernel's own <linux/vmclock-abi.h>, whose path the build
 * passes as VMCLOCK_ABI_H (`make -C native vmclock-layout
 * VMCLOCK_ABI_H=/path/to/linux/vmclock-abi.h`; bookworm's headers predate
 * it, Debian sid's linux-libc-dev ships it).
 *
 * It does not compile if any offset, size or constant differs; run, it
 * prints each field's offset and size in both, one line each, then
 * "layout ok fields=<n> size=<n>".
 */
#include <stddef.h>
#include <stdio.h>

#include "../shim/vmclock_abi.h"
#include VMCLOCK_ABI_H

#define OURS	struct vmgenid_vmclock_abi
#define KERNEL	struct vmclock_abi

#define SAME_FIELD(f)							\
	_Static_assert(offsetof(OURS, f) == offsetof(KERNEL, f),	\
		       "offset of " #f);				\
	_Static_assert(sizeof(((OURS *)0)->f) == sizeof(((KERNEL *)0)->f), \
		       "size of " #f)

#define SAME_CONSTANT(name)						\
	_Static_assert(VMGENID_##name == name, #name)

#define FIELDS(X)							\
	X(magic) X(size) X(version) X(counter_id) X(time_type)		\
	X(seq_count) X(disruption_marker) X(flags) X(pad)		\
	X(clock_status) X(leap_second_smearing_hint) X(tai_offset_sec)	\
	X(leap_indicator) X(counter_period_shift) X(counter_value)	\
	X(counter_period_frac_sec)					\
	X(counter_period_esterror_rate_frac_sec)			\
	X(counter_period_maxerror_rate_frac_sec) X(time_sec)		\
	X(time_frac_sec) X(time_esterror_nanosec)			\
	X(time_maxerror_nanosec) X(vm_generation_counter)

#define ASSERT_FIELD(f) SAME_FIELD(f);
FIELDS(ASSERT_FIELD)

_Static_assert(sizeof(OURS) == sizeof(KERNEL), "size of the structure");
SAME_CONSTANT(VMCLOCK_MAGIC);
SAME_CONSTANT(VMCLOCK_COUNTER_INVALID);
SAME_CONSTANT(VMCLOCK_TIME_UTC);
SAME_CONSTANT(VMCLOCK_STATUS_UNKNOWN);
SAME_CONSTANT(VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT);
SAME_CONSTANT(VMCLOCK_FLAG_NOTIFICATION_PRESENT);

#define PRINT_FIELD(f)							\
	printf("%-40s %3zu %3zu %2zu %2zu\n", #f, offsetof(OURS, f),	\
	       offsetof(KERNEL, f), sizeof(((OURS *)0)->f),		\
	       sizeof(((KERNEL *)0)->f));				\
	fields++;

int main(void)
{
	int fields = 0;

	printf("%-40s %3s %3s %2s %2s\n", "field", "off", "kof", "sz", "ksz");
	FIELDS(PRINT_FIELD)
	printf("layout ok fields=%d size=%zu\n", fields, sizeof(OURS));
	return 0;
}
