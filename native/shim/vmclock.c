// SPDX-License-Identifier: MIT
/*
 * The VMClock-ABI page (vmclock_abi.h).
 *
 * The daemon publishes one, for libraries that read a VMClock device
 * (AWS-LC maps /dev/vmclock0): not a clock (counter_id INVALID,
 * clock_status UNKNOWN), only the generation counter.  Both publishers of
 * a bump store into it here, through the publisher (publisher.c): after
 * the counter page and before any wake-up.
 *
 * The daemon's vmclock tier reads a real device's page with the same
 * protocol, in C because it needs the memory fences Python cannot give.
 */
#include <endian.h>
#include <errno.h>

#include "vmclock.h"
#include "vmclock_abi.h"

/* Enough for any update a writer makes; bounded, for a count held odd. */
#define VMGENID_VMCLOCK_READ_RETRIES 1024

static uint32_t vmclock_le32(uint32_t v)
{
	return htole32(v);
}

/* Store @value into a seqlock-protected field: one aligned store. */
static void vmclock_put64(uint64_t *field, uint64_t value)
{
	__atomic_store_n(field, htole64(value), __ATOMIC_RELAXED);
}

static void vmclock_write_begin(struct vmgenid_vmclock_abi *clk)
{
	uint32_t seq = le32toh(__atomic_load_n(&clk->seq_count,
					       __ATOMIC_RELAXED));

	__atomic_store_n(&clk->seq_count, vmclock_le32(seq | 1),
			 __ATOMIC_RELAXED);
	/* The odd count is seen before any field it guards changes. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void vmclock_write_end(struct vmgenid_vmclock_abi *clk)
{
	uint32_t seq = le32toh(__atomic_load_n(&clk->seq_count,
					       __ATOMIC_RELAXED));

	/* Every field it guards is seen before the even count. */
	__atomic_store_n(&clk->seq_count, vmclock_le32(seq + 1),
			 __ATOMIC_RELEASE);
}

/*
 * Lay out a page (zeros, or a page of an older daemon) at @counter: the
 * constant fields, then the rest under the seqlock; the magic last, so a
 * reader that sees it sees the rest.  0, or -EINVAL if @size cannot hold
 * the structure.
 */
int vmgenid_vmclock_init(void *page, uint32_t size, uint32_t counter)
{
	struct vmgenid_vmclock_abi *clk = page;

	if (size < sizeof(*clk))
		return -EINVAL;
	vmclock_write_begin(clk);
	clk->size = vmclock_le32(size);
	clk->version = htole16(VMGENID_VMCLOCK_VERSION);
	clk->counter_id = VMGENID_VMCLOCK_COUNTER_INVALID;
	clk->time_type = VMGENID_VMCLOCK_TIME_UTC;
	vmclock_put64(&clk->flags, VMGENID_VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT);
	clk->clock_status = VMGENID_VMCLOCK_STATUS_UNKNOWN;
	vmclock_put64(&clk->vm_generation_counter, counter);
	vmclock_write_end(clk);
	__atomic_store_n(&clk->magic, vmclock_le32(VMGENID_VMCLOCK_MAGIC),
			 __ATOMIC_RELEASE);
	return 0;
}

/*
 * Publish @counter: under the seqlock, the generation counter and a new
 * disruption marker (a restore disrupts the clock too, the ABI says).  A
 * store of the counter the page holds changes nothing (the daemon stores
 * at every start).  1 if it changed, else 0.
 */
int vmgenid_vmclock_store(void *page, uint32_t counter)
{
	struct vmgenid_vmclock_abi *clk = page;
	uint64_t marker;

	if (le64toh(__atomic_load_n(&clk->vm_generation_counter,
				    __ATOMIC_RELAXED)) == counter)
		return 0;
	marker = le64toh(__atomic_load_n(&clk->disruption_marker,
					 __ATOMIC_RELAXED));
	vmclock_write_begin(clk);
	vmclock_put64(&clk->vm_generation_counter, counter);
	vmclock_put64(&clk->disruption_marker, marker + 1);
	vmclock_write_end(clk);
	return 1;
}

/*
 * Read a VMClock page as the ABI says: seq_count (even), the fields, then
 * seq_count again, unchanged, each load ordered by an acquire; retried a
 * bounded number of times, so that a count held odd cannot hold the
 * daemon.  0; -EINVAL if the magic is wrong; -EAGAIN if no read was
 * consistent.
 */
int vmgenid_vmclock_read(const void *page,
			 struct vmgenid_vmclock_reading *out)
{
	const struct vmgenid_vmclock_abi *clk = page;
	uint64_t flags;
	uint32_t seq;
	int i;

	if (le32toh(__atomic_load_n(&clk->magic, __ATOMIC_ACQUIRE)) !=
	    VMGENID_VMCLOCK_MAGIC)
		return -EINVAL;
	for (i = 0; i < VMGENID_VMCLOCK_READ_RETRIES; i++) {
		seq = le32toh(__atomic_load_n(&clk->seq_count,
					      __ATOMIC_ACQUIRE));
		if (seq & 1)
			continue;
		out->vm_generation_counter =
			le64toh(__atomic_load_n(&clk->vm_generation_counter,
						__ATOMIC_RELAXED));
		out->disruption_marker =
			le64toh(__atomic_load_n(&clk->disruption_marker,
						__ATOMIC_RELAXED));
		flags = le64toh(__atomic_load_n(&clk->flags,
						__ATOMIC_RELAXED));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (le32toh(__atomic_load_n(&clk->seq_count,
					    __ATOMIC_RELAXED)) == seq) {
			out->seq_count = seq;
			out->generation_present = !!(flags &
				VMGENID_VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT);
			out->notification_present = !!(flags &
				VMGENID_VMCLOCK_FLAG_NOTIFICATION_PRESENT);
			return 0;
		}
	}
	return -EAGAIN;
}
