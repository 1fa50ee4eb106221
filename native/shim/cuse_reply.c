// SPDX-License-Identifier: MIT
/*
 * The publisher's replies through libfuse.  Apart, so that the publisher
 * builds and is tested (ThreadSanitizer) without libfuse.
 */
#define FUSE_USE_VERSION 31

#include <fuse_lowlevel.h>

#include "cuse_reply.h"

static int cuse_reply_buf(void *req, const char *buf, size_t size)
{
	return fuse_reply_buf(req, buf, size);
}

static int cuse_reply_err(void *req, int err)
{
	return fuse_reply_err(req, err);
}

static const struct vmgenid_reply_ops cuse_replies = {
	.buf = cuse_reply_buf,
	.err = cuse_reply_err,
};

const struct vmgenid_reply_ops *vmgenid_cuse_replies(void)
{
	return &cuse_replies;
}
