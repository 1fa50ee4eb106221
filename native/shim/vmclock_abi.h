/* SPDX-License-Identifier: MIT */
/*
 * struct vmclock_abi: the page a VMClock device (Linux's ptp_vmclock,
 * /dev/vmclock0) exposes, written here from the kernel's uapi
 * <linux/vmclock-abi.h> and the UAPI group's "UAPI.13 VMClock" spec,
 * because Debian bookworm's headers predate it.  The names differ from the
 * kernel's (vmgenid_ prefix) so that a test can include both and compare
 * every offset (native/tests/vmclock-layout.c).
 *
 * Every field is little-endian, whatever the CPU.  Fields after seq_count
 * change only under its seqlock: a writer makes it odd, then writes, then
 * makes it even, each step ordered by a release; a reader retries while it
 * is odd or changed across its read.
 *
 * Plain C: the cffi module and the C tests both include it.
 */
#ifndef VMGENID_VMCLOCK_ABI_H
#define VMGENID_VMCLOCK_ABI_H

#include <stdint.h>

#define VMGENID_VMCLOCK_MAGIC			0x4b4c4356	/* "VCLK" */
#define VMGENID_VMCLOCK_VERSION			1
#define VMGENID_VMCLOCK_COUNTER_INVALID		0xff
#define VMGENID_VMCLOCK_TIME_UTC		0
#define VMGENID_VMCLOCK_STATUS_UNKNOWN		0
#define VMGENID_VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT	(1ULL << 8)
#define VMGENID_VMCLOCK_FLAG_NOTIFICATION_PRESENT	(1ULL << 9)

struct vmgenid_vmclock_abi {
	/* Constant once the page is published. */
	uint32_t magic;
	uint32_t size;			/* of the region holding it */
	uint16_t version;
	uint8_t counter_id;
	uint8_t time_type;

	/* Under the seqlock. */
	uint32_t seq_count;		/* odd while an update is under way */
	uint64_t disruption_marker;	/* new value: the clock was disrupted */
	uint64_t flags;
	uint8_t pad[2];
	uint8_t clock_status;
	uint8_t leap_second_smearing_hint;
	uint16_t tai_offset_sec;	/* two's complement */
	uint8_t leap_indicator;
	uint8_t counter_period_shift;
	uint64_t counter_value;
	uint64_t counter_period_frac_sec;
	uint64_t counter_period_esterror_rate_frac_sec;
	uint64_t counter_period_maxerror_rate_frac_sec;
	uint64_t time_sec;
	uint64_t time_frac_sec;
	uint64_t time_esterror_nanosec;
	uint64_t time_maxerror_nanosec;
	/* New value: the guest was loaded from a snapshot. */
	uint64_t vm_generation_counter;
};

#endif /* VMGENID_VMCLOCK_ABI_H */
