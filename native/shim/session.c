// SPDX-License-Identifier: MIT
/*
 * The loop around libfuse's requests, in C.  The daemon's loop (Python)
 * hands over its file descriptors and its next deadline; this one serves
 * requests until the daemon has something to do.  A client's round trip
 * to the state machine (transport.c) then costs no interpreter time at all.
 */
#define FUSE_USE_VERSION 31

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "session.h"
#include "transport.h"

/* A bound above any burst of real clients (each has at most a few requests
 * queued): a flood cannot starve signals, interrupts and hint sources. */
#define MAX_BATCH	16384

static double monotonic_now(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec + now.tv_nsec / 1e9;
}

/*
 * Answer the requests the kernel has queued (the session's fd is
 * non-blocking), up to MAX_BATCH, then the interrupts they brought: 0 once
 * none is left, 1 if MAX_BATCH were answered (more may wait), -ENODEV once
 * the kernel ended the session, or another -errno if reading failed.
 */
static int drain(struct fuse_session *se, struct fuse_buf *buf,
		 struct vmgenid_transport *t)
{
	unsigned int i;
	int res = 1;

	for (i = 0; i < MAX_BATCH; i++) {
		if (fuse_session_exited(se)) {
			res = -ENODEV;
			break;
		}
		/* 0: an interrupted request, or the end (the session exited). */
		res = fuse_session_receive_buf(se, buf);
		if (res == -EAGAIN || res == -EINTR) {
			res = 0;
			break;
		}
		if (res < 0)
			break;
		if (res > 0)
			fuse_session_process_buf(se, buf);
		res = 1;
	}
	vmgenid_transport_answer_interrupts(t);
	return res;
}

/*
 * Serve until the daemon's loop has something to do: another of @fds is
 * ready (fds[0] is the session's; the others are the daemon's, their
 * revents left for it), a signal came, @timeout_ms passed (-1: none), a
 * request wants the daemon (an operation answered in Python, a new
 * WAIT_WATCHERS deadline, something refused to report), a figure changed
 * while the status is clean (@status_dirty 0), or a full batch was
 * answered.  Why: VMGENID_SERVE_* bits (transport.h); or -ENODEV once the
 * kernel ended the session, or -errno.  @last_request: the
 * CLOCK_MONOTONIC time of the last batch of requests, or 0 if none came.
 */
int vmgenid_session_serve(struct fuse_session *se, struct fuse_buf *buf,
			  struct vmgenid_transport *t, struct pollfd *fds,
			  unsigned int nfds, int timeout_ms, int status_dirty,
			  double *last_request)
{
	double deadline = monotonic_now() + timeout_ms / 1000.0;
	unsigned int reasons = 0;
	double left;
	unsigned int i;
	int res;

	*last_request = 0;
	for (;;) {
		/* poll() leaves them as they were when a signal cuts it short. */
		for (i = 0; i < nfds; i++)
			fds[i].revents = 0;
		res = poll(fds, nfds, timeout_ms);
		if (res < 0) {
			if (errno != EINTR)
				return -errno;
			reasons |= VMGENID_SERVE_SIGNAL;
			break;
		}
		if (res == 0) {
			reasons |= VMGENID_SERVE_TIMEOUT;
			break;
		}
		if (fds[0].revents) {
			res = drain(se, buf, t);
			*last_request = monotonic_now();
			if (res < 0)
				return res;
			if (res) {
				reasons |= VMGENID_SERVE_BATCH;
				break;
			}
		}
		for (i = 1; i < nfds; i++)
			if (fds[i].revents)
				reasons |= VMGENID_SERVE_FDS;
		if (reasons || vmgenid_transport_wanted(t, status_dirty))
			break;
		if (timeout_ms >= 0) {
			left = deadline - monotonic_now();
			if (left <= 0) {
				reasons |= VMGENID_SERVE_TIMEOUT;
				break;
			}
			timeout_ms = (int)(left * 1000) + 1;
		}
	}
	return reasons | vmgenid_transport_take_reasons(t);
}

/* The session's end: its node goes, and the request buffer it filled. */
void vmgenid_session_end(struct fuse_session *se, struct fuse_buf *buf)
{
	fuse_session_destroy(se);
	free(buf->mem);
	buf->mem = NULL;
}
