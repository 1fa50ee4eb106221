// SPDX-License-Identifier: MIT
/*
 * The loop around libfuse's requests, in C: each request still goes to its
 * file operation in Python (transport.py, through cffi's callbacks), but
 * reading it from /dev/cuse and handing it to libfuse costs no interpreter
 * time, which on a synchronous client's round trip was a good part of the
 * daemon's own.
 */
#define FUSE_USE_VERSION 31

#include <errno.h>

#include <fuse_lowlevel.h>

#include "session.h"

/*
 * Answer the requests the kernel has queued (the session's fd is
 * non-blocking), up to @max: 0 once none is left, 1 if @max were answered
 * (more may wait), -ENODEV once the kernel ended the session, or another
 * -errno if reading /dev/cuse failed.
 */
int vmgenid_session_drain(struct fuse_session *se, struct fuse_buf *buf,
			  unsigned int max)
{
	unsigned int i;
	int res;

	for (i = 0; i < max; i++) {
		if (fuse_session_exited(se))
			return -ENODEV;
		/* 0: an interrupted request, or the end (the session exited). */
		res = fuse_session_receive_buf(se, buf);
		if (res == -EAGAIN || res == -EINTR)
			return 0;
		if (res < 0)
			return res;
		if (res > 0)
			fuse_session_process_buf(se, buf);
	}
	return fuse_session_exited(se) ? -ENODEV : 1;
}
