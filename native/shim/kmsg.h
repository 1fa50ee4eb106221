/* SPDX-License-Identifier: MIT */
/*
 * The kernel log's records and the kernel-log tier's record rule
 * (kmsg.c), and the one reader of /dev/kmsg: the one home of each, for
 * the poll thread and for Python (lib.vmgenid_kmsg_read, _parse, _feed).
 */
#ifndef VMGENID_KMSG_H
#define VMGENID_KMSG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VMGENID_KMSG_RECORD_MAX 8192	/* ~1 KiB of text, its dictionary */

/* What a record is to the kernel-log tier: one bump, or none. */
enum vmgenid_kmsg_change {
	VMGENID_KMSG_NONE = 0,
	VMGENID_KMSG_VMFORK = 1,	/* the kernel's VM fork record */
	VMGENID_KMSG_LOST = 2,		/* records before it were lost */
};

/* Which records were accounted for. */
struct vmgenid_kmsg_records {
	int64_t applied;	/* the last record's sequence number, or -1 */
};

int vmgenid_kmsg_parse(const char *record, size_t len, int64_t *seq);
ssize_t vmgenid_kmsg_read(int fd, char *record);
int vmgenid_kmsg_feed(struct vmgenid_kmsg_records *records,
		      const char *record, size_t len);

#endif /* VMGENID_KMSG_H */
