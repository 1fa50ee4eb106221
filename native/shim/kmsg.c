// SPDX-License-Identifier: MIT
/*
 * The kernel log's records, as /dev/kmsg hands them out one per read:
 * "prio,seq,usec,flags[,...];text\n" then optional " KEY=value\n"
 * dictionary lines.  And the kernel-log tier's record rule
 * (docs/interface.rst, "Where changes come from"): each record of the
 * kernel's own VM fork line newer than the last one applied is one change,
 * and records lost before they were read are one change too (one of them
 * may have been it).
 *
 * Text the kernel hands us is not trusted: a record is read within its
 * length only, and anything not in this format is no record.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "guid.h"
#include "kmsg.h"

/* A decimal field at @*p, up to @end: its value, or -1 (not one). */
static int64_t kmsg_number(const char **p, const char *end)
{
	int64_t value = 0;
	const char *start = *p;

	for (; *p < end && **p >= '0' && **p <= '9'; (*p)++) {
		int digit = **p - '0';

		if (value > (INT64_MAX - digit) / 10)
			return -1;
		value = value * 10 + digit;
	}
	return *p == start ? -1 : value;
}

/*
 * The record's sequence number in @seq, and 1 if it is the kernel's VM
 * fork record, 0 if another record, -1 if not a record.  The kernel's
 * record is its priority (facility 0, KERN_NOTICE: a process's write to
 * /dev/kmsg gets LOG_USER whatever it asks) and its whole text line
 * exactly: many kernel records carry text a user chose (a segfaulting
 * binary's name, a failed mount's options), so the words anywhere inside
 * another record are no change.  /dev/kmsg escapes a newline inside a
 * record's text, so the text ends at the first one; the dictionary lines
 * after it never count.
 */
int vmgenid_kmsg_parse(const char *record, size_t len, int64_t *seq)
{
	const char *end = record + len, *p = record, *text, *line_end;
	int64_t prio;

	prio = kmsg_number(&p, end);
	if (prio < 0 || p == end || *p++ != ',')
		return -1;
	*seq = kmsg_number(&p, end);
	if (*seq < 0 || p == end || *p != ',')
		return -1;
	text = memchr(p, ';', end - p);
	if (!text)
		return -1;
	text++;
	line_end = memchr(text, '\n', end - text);
	if (!line_end)
		line_end = end;
	return prio == VMGENID_VMFORK_PRIO &&
	       (size_t)(line_end - text) == strlen(vmgenid_vmfork_line) &&
	       memcmp(text, vmgenid_vmfork_line, line_end - text) == 0;
}

/*
 * Account for @record: whether it is one change not applied yet.  Records
 * at or before @records->applied were read before.  With nothing applied
 * yet (-1: a new boot) the first record only starts the count.  After
 * EPIPE (records overwritten before they were read) /dev/kmsg goes on
 * from the oldest record left, so the gap in sequence numbers shows it.
 */
int vmgenid_kmsg_feed(struct vmgenid_kmsg_records *records,
		      const char *record, size_t len)
{
	int64_t seq;
	int kind = vmgenid_kmsg_parse(record, len, &seq);
	int lost;

	if (kind < 0)
		return VMGENID_KMSG_NONE;
	if (records->applied >= 0 && seq <= records->applied)
		return VMGENID_KMSG_NONE;
	lost = records->applied >= 0 && seq > records->applied + 1;
	records->applied = seq;
	if (kind)
		return VMGENID_KMSG_VMFORK;
	return lost ? VMGENID_KMSG_LOST : VMGENID_KMSG_NONE;
}

/*
 * The next record in @record: its length, 0 if there is none now, -1 if
 * /dev/kmsg failed (errno; its end, which only a pipe in the tests has,
 * is EPIPE).  The one reader of /dev/kmsg, the poll thread's and
 * Python's (lib.vmgenid_kmsg_read).  After EPIPE (records overwritten
 * before we read them) it goes on from the oldest left: the sequence
 * numbers show the gap (vmgenid_kmsg_feed()).
 */
ssize_t vmgenid_kmsg_read(int fd, char *record)
{
	for (;;) {
		ssize_t n = read(fd, record, VMGENID_KMSG_RECORD_MAX);

		if (n > 0)
			return n;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0 && (errno == EPIPE || errno == EINTR))
			continue;
		if (n == 0)
			errno = EPIPE;	/* a pipe's end, in the tests */
		return -1;
	}
}
