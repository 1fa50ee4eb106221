/* SPDX-License-Identifier: MIT */
/* The publisher: the one path of every bump (publisher.c). */
#ifndef VMGENID_PUBLISHER_H
#define VMGENID_PUBLISHER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct vmgenid_changes;
struct vmgenid_page;
struct vmgenid_state;
struct vmgenid_statefile;
struct vmgenid_publisher;

/* How a blocked read is answered: libfuse (cuse_reply.c), or a test's. */
struct vmgenid_reply_ops {
	int (*buf)(void *req, const char *buf, size_t size);
	int (*err)(void *req, int err);
};

/* The publications since the daemon last took them, for its log. */
struct vmgenid_publication {
	uint32_t bumped_from;		/* the counter before the first */
	uint32_t counter;		/* published by the last */
	unsigned int count;		/* publications */
	unsigned int hardware;		/* of them on a new GUID or record */
	int kernel_log;			/* the kernel's VM fork line woke one */
	unsigned int records;		/* of them for kernel records */
	int lost;			/* one for records lost unread */
	int64_t kmsg_seq;		/* the last of those records */
	int statefile_err;			/* the last state file commit: 0, -errno */
	int page_result;		/* the last vmgenid_page_store() */
	int reseed_err;			/* a reseed failed: -errno, else 0 */
	unsigned int reseeds;		/* of them reseeded without a GUID */
	unsigned int reseed_cpu_words;	/* the last such: 32-bit words from
					 * RDSEED/RDRAND */
	unsigned int replies;		/* blocked reads answered */
	/* The last one, from its start (the thread: its wake-up), in us. */
	unsigned int committed_us, replied_us;
};

/* One of the daemon's bumps (vmgenid_publisher_bump()). */
struct vmgenid_bump {
	int64_t minimum;		/* FORCE_GEN_UPDATE_MIN's, or -1 */
	int64_t kmsg_seq;		/* the kernel record applied, or -1 */
	int reseed;			/* a change the kernel did not reseed for */
	uint64_t generation;		/* then: the hypervisor's counter */
};

struct vmgenid_publisher *
vmgenid_publisher_new(struct vmgenid_statefile *statefile,
		      struct vmgenid_page *page, struct vmgenid_page *vmclock,
		      const struct vmgenid_reply_ops *replies, int rng_fd,
		      uint32_t counter, int64_t kmsg_seq);
void vmgenid_publisher_free(struct vmgenid_publisher *pub);

void vmgenid_publisher_set_guid(struct vmgenid_publisher *pub,
				const void *guid);
int vmgenid_publisher_guid(struct vmgenid_publisher *pub, void *out);
uint32_t vmgenid_publisher_settle(struct vmgenid_publisher *pub);
uint32_t vmgenid_publisher_published(void *pub);

int vmgenid_publisher_bump(struct vmgenid_publisher *pub,
			   struct vmgenid_state *st,
			   const struct vmgenid_bump *bump,
			   struct vmgenid_changes *changes);
int vmgenid_publisher_hardware(struct vmgenid_publisher *pub,
			       const void *guid, int kernel_reseeded,
			       const struct timespec *woke);
int vmgenid_publisher_record(struct vmgenid_publisher *pub, int64_t seq,
			     int lost, const struct timespec *woke);
int vmgenid_publisher_save(struct vmgenid_publisher *pub, int64_t kmsg_seq);
int vmgenid_publisher_take(struct vmgenid_publisher *pub,
			   struct vmgenid_publication *out);

int vmgenid_publisher_wait(struct vmgenid_publisher *pub, void *req,
			   uint64_t token, uint32_t seen);
int vmgenid_publisher_cancel(struct vmgenid_publisher *pub, uint64_t token,
			     int err);
unsigned int vmgenid_publisher_abort(struct vmgenid_publisher *pub, int err);

#endif /* VMGENID_PUBLISHER_H */
