/* SPDX-License-Identifier: MIT */
/* The loop around libfuse's requests (session.c). */
#ifndef VMGENID_SESSION_H
#define VMGENID_SESSION_H

struct fuse_session;
struct fuse_buf;

int vmgenid_session_drain(struct fuse_session *se, struct fuse_buf *buf,
			  unsigned int max);

#endif /* VMGENID_SESSION_H */
