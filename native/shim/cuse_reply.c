// SPDX-License-Identifier: MIT
/*
 * The publisher's replies through libfuse.  Apart, so that the publisher
 * builds and is tested (ThreadSanitizer) without libfuse.  The GUID poll
 * thread replies too: a reply that failed is counted with atomics, and
 * the daemon's loop takes the count for its log (transport.c).
 */
#define FUSE_USE_VERSION 31

#include <fuse_lowlevel.h>

#include "cuse_reply.h"

static unsigned int failures;
static int last_failure;

static int counted(int res)
{
	if (res < 0) {
		__atomic_store_n(&last_failure, res, __ATOMIC_RELAXED);
		__atomic_add_fetch(&failures, 1, __ATOMIC_RELEASE);
	}
	return res;
}

static int cuse_reply_buf(void *req, const char *buf, size_t size)
{
	return counted(fuse_reply_buf(req, buf, size));
}

static int cuse_reply_err(void *req, int err)
{
	return counted(fuse_reply_err(req, err));
}

static const struct vmgenid_reply_ops cuse_replies = {
	.buf = cuse_reply_buf,
	.err = cuse_reply_err,
};

const struct vmgenid_reply_ops *vmgenid_cuse_replies(void)
{
	return &cuse_replies;
}

/* Whether a reply failed since the last vmgenid_cuse_reply_failures(). */
int vmgenid_cuse_reply_failed(void)
{
	return __atomic_load_n(&failures, __ATOMIC_RELAXED) != 0;
}

/* How many of these replies failed since the last call; the last one's
 * -errno in @last_err. */
unsigned int vmgenid_cuse_reply_failures(int *last_err)
{
	unsigned int n = __atomic_exchange_n(&failures, 0, __ATOMIC_ACQUIRE);

	*last_err = __atomic_load_n(&last_failure, __ATOMIC_RELAXED);
	return n;
}
