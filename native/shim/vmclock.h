/* SPDX-License-Identifier: MIT */
/* The VMClock-ABI page: the daemon's own, and a real device's
 * (vmclock.c). */
#ifndef VMGENID_VMCLOCK_H
#define VMGENID_VMCLOCK_H

#include <stdint.h>

/* One consistent read of a VMClock page. */
struct vmgenid_vmclock_reading {
	uint64_t vm_generation_counter;
	uint64_t disruption_marker;
	uint32_t seq_count;		/* even: the one they were read under */
	int generation_present;		/* VM_GEN_COUNTER_PRESENT */
	int notification_present;	/* NOTIFICATION_PRESENT */
};

int vmgenid_vmclock_init(void *page, uint32_t size, uint32_t counter);
int vmgenid_vmclock_store(void *page, uint32_t counter);
int vmgenid_vmclock_read(const void *page,
			 struct vmgenid_vmclock_reading *out);

#endif /* VMGENID_VMCLOCK_H */
