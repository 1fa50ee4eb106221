/* SPDX-License-Identifier: MIT */
/* The loop around libfuse's requests (session.c). */
#ifndef VMGENID_SESSION_H
#define VMGENID_SESSION_H

#include <poll.h>

struct fuse_session;
struct fuse_buf;
struct vmgenid_transport;

int vmgenid_session_serve(struct fuse_session *se, struct fuse_buf *buf,
			  struct vmgenid_transport *t, struct pollfd *fds,
			  unsigned int nfds, int timeout_ms, int status_dirty,
			  double *last_request);
void vmgenid_session_end(struct fuse_session *se, struct fuse_buf *buf);

#endif /* VMGENID_SESSION_H */
