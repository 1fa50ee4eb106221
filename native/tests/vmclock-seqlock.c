// SPDX-License-Identifier: MIT
/*
 * vmclock-seqlock [STORES]
 *
 * The daemon's VMClock-ABI page writer (native/shim/vmclock.c)
 * against concurrent readers: a writer thread stores STORES (default
 * 20000000) counters while two reader threads read the page under the
 * seqlock.  Each store moves vm_generation_counter and disruption_marker
 * together, so every consistent read must show the same difference
 * between them; a writer that did not hold seq_count odd while writing
 * lets a reader take a half-written update.
 *
 * Output: "consistent=<n> torn=<n> retried_out=<n>"; exit 0 if no read
 * was torn and each reader had at least one consistent read, else 1.
 */
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../shim/vmclock_abi.h"
#include "../shim/vmclock.h"

#define READERS 2

static _Alignas(4096) unsigned char page[4096];
static int done, started;

struct reader_result {
	unsigned long consistent, torn, retried_out;
	uint64_t offset;
};

static void *reader(void *arg)
{
	struct reader_result *r = arg;
	struct vmgenid_vmclock_reading out;

	__atomic_add_fetch(&started, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
		if (vmgenid_vmclock_read(page, &out)) {
			r->retried_out++;
			continue;
		}
		if (out.disruption_marker - out.vm_generation_counter !=
		    r->offset || (out.seq_count & 1))
			r->torn++;
		else
			r->consistent++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned long stores = argc > 1 ? strtoul(argv[1], NULL, 0) : 20000000;
	struct reader_result results[READERS];
	struct vmgenid_vmclock_reading first;
	pthread_t threads[READERS];
	unsigned long consistent = 0, torn = 0, retried_out = 0, n;
	int i, ok = 1;

	if (vmgenid_vmclock_init(page, sizeof(page), 0) ||
	    vmgenid_vmclock_read(page, &first)) {
		printf("cannot lay out the page\n");
		return 1;
	}
	memset(results, 0, sizeof(results));
	for (i = 0; i < READERS; i++) {
		results[i].offset = first.disruption_marker -
				    first.vm_generation_counter;
		pthread_create(&threads[i], NULL, reader, &results[i]);
	}
	while (__atomic_load_n(&started, __ATOMIC_ACQUIRE) < READERS)
		;
	for (n = 1; n <= stores; n++)
		vmgenid_vmclock_store(page, (uint32_t)n);
	__atomic_store_n(&done, 1, __ATOMIC_RELEASE);
	for (i = 0; i < READERS; i++) {
		pthread_join(threads[i], NULL);
		consistent += results[i].consistent;
		torn += results[i].torn;
		retried_out += results[i].retried_out;
		if (!results[i].consistent)
			ok = 0;
	}
	printf("consistent=%lu torn=%lu retried_out=%lu\n", consistent, torn,
	       retried_out);
	return ok && !torn ? 0 : 1;
}
