// SPDX-License-Identifier: MIT
/*
 * vmclock-reader [-d PATH]
 *
 * Reads a VMClock page the way the ABI (linux/vmclock-abi.h, "UAPI.13
 * VMClock") tells a guest to, as AWS-LC's VM-UBE detection does: open
 * PATH (default /dev/vmclock0) O_RDONLY, mmap sizeof(struct vmclock_abi)
 * PROT_READ MAP_SHARED, bail out unless the magic is VMCLOCK_MAGIC and
 * VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT is set, then read
 * vm_generation_counter under the seqlock: seq_count with its low bit
 * cleared, an acquire fence, the fields, an acquire fence, seq_count again,
 * retried until both agree (a bounded number of times).
 *
 * Output (one line, stdout):
 *	ok magic=<hex> size=<n> version=<n> counter_id=<n> clock_status=<n>
 *	   flags=<hex> seq_count=<n> disruption_marker=<n>
 *	   vm_generation_counter=<n>
 *	open errno=<ENAME> | map errno=<ENAME> | bad magic=<hex>
 *	no generation counter flags=<hex> | torn seq_count=<n>
 * Exit: 0 ok, 1 wrong magic, 2 no generation counter, 3 no consistent read
 * within the retries, 4 open or mmap failed, 64 usage.
 */
#define _GNU_SOURCE		/* strerrorname_np */
#include <endian.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "errname.h"
#include "../shim/vmclock_abi.h"

#define SEQLOCK_RETRIES	1024

/* The values a consistent read gives. */
struct snapshot {
	uint32_t seq;
	uint64_t flags;
	uint64_t marker;
	uint64_t counter;
};

static int read_snapshot(volatile struct vmgenid_vmclock_abi *clk,
			 struct snapshot *out)
{
	int i;

	for (i = 0; i < SEQLOCK_RETRIES; i++) {
		uint32_t seq = le32toh(clk->seq_count) & ~1U;

		/* Pairs with the writer's release before its fields. */
		atomic_thread_fence(memory_order_acquire);
		out->flags = le64toh(clk->flags);
		out->marker = le64toh(clk->disruption_marker);
		out->counter = le64toh(clk->vm_generation_counter);
		/* The fields are read before seq_count is again. */
		atomic_thread_fence(memory_order_acquire);
		if (seq == le32toh(clk->seq_count)) {
			out->seq = seq;
			return 0;
		}
	}
	return -1;
}

int main(int argc, char **argv)
{
	const char *path = "/dev/vmclock0";
	volatile struct vmgenid_vmclock_abi *clk;
	struct snapshot snap;
	void *addr;
	int fd, opt;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "d:")) != -1) {
		if (opt != 'd') {
			fprintf(stderr, "usage: vmclock-reader [-d PATH]\n");
			return 64;
		}
		path = optarg;
	}

	fd = open(path, O_RDONLY);
	if (fd < 0) {
		printf("open errno=%s\n", errname(errno));
		return 4;
	}
	addr = mmap(NULL, sizeof(*clk), PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (addr == MAP_FAILED) {
		printf("map errno=%s\n", errname(errno));
		return 4;
	}
	clk = addr;

	/* A constant field: no seqlock needed. */
	if (le32toh(clk->magic) != VMGENID_VMCLOCK_MAGIC) {
		printf("bad magic=%#x\n", le32toh(clk->magic));
		return 1;
	}
	if (read_snapshot(clk, &snap)) {
		printf("torn seq_count=%u\n", le32toh(clk->seq_count));
		return 3;
	}
	if (!(snap.flags & VMGENID_VMCLOCK_FLAG_VM_GEN_COUNTER_PRESENT)) {
		printf("no generation counter flags=%#" PRIx64 "\n", snap.flags);
		return 2;
	}
	printf("ok magic=%#x size=%u version=%u counter_id=%u clock_status=%u "
	       "flags=%#" PRIx64 " seq_count=%u disruption_marker=%" PRIu64
	       " vm_generation_counter=%" PRIu64 "\n",
	       le32toh(clk->magic), le32toh(clk->size), le16toh(clk->version),
	       clk->counter_id, clk->clock_status, snap.flags, snap.seq,
	       snap.marker, snap.counter);
	return 0;
}
