// SPDX-License-Identifier: MIT
/*
 * The CUSE transport: one function per kernel file operation, shaped like
 * libfuse's example/cuse.c.  Each asks the state machine (state.c), which
 * returns 0 or -errno, and replies: an error in one place (reply_result),
 * the replies it owes others first (apply), its own last.
 *
 * open and the ioctls that change the generation are the daemon's
 * (transport.py: who the caller is, the log, the status), reached through
 * its ops with the handle it gave; everything a watcher does all day
 * (read, ack, poll, close, GET_OUTDATED_WATCHERS, WAIT_WATCHERS) is
 * answered here without entering Python, and so is an unknown ioctl
 * (EINVAL), counted for the daemon's log with every reply that failed.
 *
 * A blocked read is registered with the publisher, which answers it at the
 * next publication; a waiting WAIT_WATCHERS is kept by the state machine,
 * which hands its reply back as a completion.  An interrupt may arrive
 * under the request's lock (libfuse calls the callback at once if it came
 * first), so the callback only queues the request's token; the queue is
 * answered after each batch (vmgenid_transport_answer_interrupts()).
 *
 * Everything here runs on the daemon's main thread.
 */
#define FUSE_USE_VERSION 31

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <linux/vmgenid.h>

#include "cuse_reply.h"
#include "publisher.h"
#include "state.h"
#include "transport.h"

#define POLLIN_READY	(POLLIN | POLLRDNORM)

struct vmgenid_transport {
	struct vmgenid_state *state;
	struct vmgenid_publisher *pub;
	const struct vmgenid_daemon_ops *ops;
	void *daemon;			/* the ops' first argument */
	struct vmgenid_changes changes;	/* scratch, for one transition */
	uint64_t next_token;
	uint64_t *interrupted;		/* tokens of interrupted requests */
	size_t ninterrupted, interrupted_room;
	unsigned int reasons;		/* VMGENID_SERVE_*, since taken */
	struct vmgenid_transport_report report;	/* since taken */
};

struct vmgenid_transport *
vmgenid_transport_new(struct vmgenid_state *state,
		      struct vmgenid_publisher *pub,
		      const struct vmgenid_daemon_ops *ops, void *daemon)
{
	struct vmgenid_transport *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->state = state;
	t->pub = pub;
	t->ops = ops;
	t->daemon = daemon;
	t->changes.bumped_from = -1;
	return t;
}

void vmgenid_transport_free(struct vmgenid_transport *t)
{
	if (!t)
		return;
	vmgenid_changes_free(&t->changes);
	free(t->interrupted);
	free(t);
}

/*
 * Whether the loop must return to the daemon now: a request or a report
 * for it, or a changed figure while its status is clean (@status_dirty:
 * a write is due anyway, and requests keep it off their path).
 */
int vmgenid_transport_wanted(struct vmgenid_transport *t, int status_dirty)
{
	return (t->reasons & (VMGENID_SERVE_DAEMON | VMGENID_SERVE_REPORT)) ||
	       ((t->reasons & VMGENID_SERVE_FIGURES) && !status_dirty);
}

/*
 * The reasons since the last take, cleared; with a report due for the
 * publisher's replies too (the GUID poll thread's, which wakes the loop
 * through the daemon's eventfd).
 */
unsigned int vmgenid_transport_take_reasons(struct vmgenid_transport *t)
{
	unsigned int reasons = t->reasons;

	t->reasons = 0;
	if (vmgenid_cuse_reply_failed())
		reasons |= VMGENID_SERVE_REPORT;
	return reasons;
}

/* 1 and what was refused or failed since the last take, or 0 if none. */
int vmgenid_transport_take_report(struct vmgenid_transport *t,
				  struct vmgenid_transport_report *out)
{
	unsigned int failed;
	int err;

	failed = vmgenid_cuse_reply_failures(&err);
	if (failed) {
		t->report.failed_replies += failed;
		t->report.last_reply_err = err;
	}
	if (!t->report.unknown_ioctls && !t->report.failed_replies)
		return 0;
	*out = t->report;
	memset(&t->report, 0, sizeof(t->report));
	return 1;
}

/* A reply of ours that libfuse could not send (the caller gone: -ENOENT). */
static void replied(struct vmgenid_transport *t, int res)
{
	if (res >= 0)
		return;
	if (!t->report.unknown_ioctls && !t->report.failed_replies)
		t->reasons |= VMGENID_SERVE_REPORT;
	t->report.failed_replies++;
	t->report.last_reply_err = res;
}

/* The replies, poll wake-ups and releases one transition owes others. */
static void apply(struct vmgenid_transport *t)
{
	struct vmgenid_changes *c = &t->changes;
	size_t i;

	for (i = 0; i < c->ncompletions; i++) {
		if (c->completions[i].err)
			replied(t, fuse_reply_err(c->completions[i].req,
						  c->completions[i].err));
		else
			replied(t, fuse_reply_ioctl(c->completions[i].req, 0,
						    NULL, 0));
	}
	for (i = 0; i < c->nwake; i++)
		fuse_lowlevel_notify_poll(c->wake[i]);
	for (i = 0; i < c->nrelease; i++)
		fuse_pollhandle_destroy(c->release[i]);
	if (c->figures)
		t->reasons |= VMGENID_SERVE_FIGURES;
	vmgenid_changes_clear(c);
}

/* A file operation's own reply when the state machine refused it. */
static void reply_result(struct vmgenid_transport *t, fuse_req_t req, int res)
{
	if (res < 0)
		replied(t, fuse_reply_err(req, -res));
}

static struct vmgenid_transport *transport_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void interrupted(fuse_req_t req, void *data)
{
	struct vmgenid_transport *t = transport_of(req);
	uint64_t *grown;
	size_t room;

	if (t->ninterrupted == t->interrupted_room) {
		room = t->interrupted_room ? 2 * t->interrupted_room : 16;
		grown = realloc(t->interrupted, room * sizeof(*grown));
		/*
		 * Out of memory: the call stays blocked until the next
		 * publication or the end answers it; no change is lost.
		 */
		if (!grown)
			return;
		t->interrupted = grown;
		t->interrupted_room = room;
	}
	t->interrupted[t->ninterrupted++] = (uintptr_t)data;
}

/* A request's token: never reused, unlike its address. */
static uint64_t new_token(struct vmgenid_transport *t)
{
	return ++t->next_token;
}

/*
 * Only for a call that waits, and before anyone else may answer it: an
 * interrupt that came first runs interrupted() now.
 */
static void watch_interrupt(fuse_req_t req, uint64_t token)
{
	fuse_req_interrupt_func(req, interrupted, (void *)(uintptr_t)token);
}

void vmgenid_transport_answer_interrupts(struct vmgenid_transport *t)
{
	size_t i;

	for (i = 0; i < t->ninterrupted; i++) {
		vmgenid_state_interrupt(t->state, t->interrupted[i],
					&t->changes);
		apply(t);
		vmgenid_publisher_cancel(t->pub, t->interrupted[i], EINTR);
	}
	t->ninterrupted = 0;
}

/* -- file operations ---------------------------------------------------- */

static void transport_init_done(void *userdata)
{
	struct vmgenid_transport *t = userdata;

	t->reasons |= VMGENID_SERVE_DAEMON;
	t->ops->init_done(t->daemon);
}

static void transport_open(fuse_req_t req, struct fuse_file_info *fi)
{
	struct vmgenid_transport *t = transport_of(req);

	t->reasons |= VMGENID_SERVE_DAEMON | VMGENID_SERVE_FIGURES;
	t->ops->open(t->daemon, req, fi);
}

static void transport_read(fuse_req_t req, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	struct vmgenid_transport *t = transport_of(req);
	uint32_t counter;
	uint64_t token;
	int res;

	(void)off;
	res = vmgenid_state_read(t->state, fi->fh, size,
				 fi->flags & O_NONBLOCK, &counter);
	if (res == VMGENID_READ_BLOCKS) {
		token = new_token(t);
		watch_interrupt(req, token);
		res = vmgenid_publisher_wait(t->pub, req, token, counter);
	} else if (res == VMGENID_READ_NOW) {
		replied(t, fuse_reply_buf(req, (const char *)&counter,
					  sizeof(counter)));
		return;
	} else if (res == 0) {
		replied(t, fuse_reply_buf(req, NULL, 0));
		return;
	}
	reply_result(t, req, res);
}

static void transport_write(fuse_req_t req, const char *buf, size_t size,
			    off_t off, struct fuse_file_info *fi)
{
	struct vmgenid_transport *t = transport_of(req);
	int res;

	(void)off;
	res = vmgenid_state_ack(t->state, fi->fh, buf, size, &t->changes);
	apply(t);
	if (res == 0)
		replied(t, fuse_reply_write(req, size));
	reply_result(t, req, res);
}

static void transport_release(fuse_req_t req, struct fuse_file_info *fi)
{
	struct vmgenid_transport *t = transport_of(req);
	int res;

	res = vmgenid_state_release(t->state, fi->fh, &t->changes);
	apply(t);
	if (res == 0)
		replied(t, fuse_reply_err(req, 0));
	reply_result(t, req, res);
}

static void transport_poll(fuse_req_t req, struct fuse_file_info *fi,
			   struct fuse_pollhandle *ph)
{
	struct vmgenid_transport *t = transport_of(req);
	int res;

	res = vmgenid_state_poll(t->state, fi->fh, ph, &t->changes);
	apply(t);
	if (res >= 0) {
		replied(t, fuse_reply_poll(req, res ? POLLIN_READY : 0));
		return;
	}
	if (ph)		/* not kept: nobody else will free it */
		fuse_pollhandle_destroy(ph);
	reply_result(t, req, res);
}

/*
 * WAIT_WATCHERS's timeout from the ioctl's argument (an unsigned long):
 * every u32 is itself, in ms (0: none, docs/interface.rst); a wider value
 * cannot mean a short wait, so it is the longest.
 */
uint32_t vmgenid_transport_wait_timeout_ms(uint64_t arg)
{
	return arg > UINT32_MAX ? UINT32_MAX : arg;
}

static int wait_watchers(struct vmgenid_transport *t, fuse_req_t req,
			 struct fuse_file_info *fi, uintptr_t arg)
{
	uint32_t timeout_ms = vmgenid_transport_wait_timeout_ms(arg);
	uint64_t token = new_token(t);
	struct timespec now;
	int res;

	clock_gettime(CLOCK_MONOTONIC, &now);
	res = vmgenid_state_wait_watchers(t->state, fi->fh, timeout_ms,
					  now.tv_sec + now.tv_nsec / 1e9,
					  token, req);
	if (res == 0) {
		replied(t, fuse_reply_ioctl(req, 0, NULL, 0));
	} else if (res == 1) {
		watch_interrupt(req, token);
		/* A new deadline: the daemon's loop sets its timeout. */
		if (timeout_ms)
			t->reasons |= VMGENID_SERVE_DAEMON;
	}
	return res;
}

/* An ioctl that is none of docs/interface.rst's: EINVAL, counted. */
static void refuse_ioctl(struct vmgenid_transport *t, fuse_req_t req,
			 unsigned int cmd)
{
	if (!t->report.unknown_ioctls && !t->report.failed_replies)
		t->reasons |= VMGENID_SERVE_REPORT;
	t->report.unknown_ioctls++;
	t->report.last_ioctl = cmd;
	t->report.last_ioctl_pid = fuse_req_ctx(req)->pid;
	replied(t, fuse_reply_err(req, EINVAL));
}

static void transport_ioctl(fuse_req_t req, int cmd, void *arg,
			    struct fuse_file_info *fi, unsigned int flags,
			    const void *in_buf, size_t in_bufsz,
			    size_t out_bufsz)
{
	struct vmgenid_transport *t = transport_of(req);
	size_t outdated;

	(void)flags;
	(void)out_bufsz;
	switch ((unsigned int)cmd) {
	case VMGENID_GET_OUTDATED_WATCHERS:
		outdated = vmgenid_state_outdated(t->state);
		replied(t, fuse_reply_ioctl(req, outdated > INT32_MAX ?
					    INT32_MAX : (int)outdated,
					    NULL, 0));
		return;
	case VMGENID_WAIT_WATCHERS:
		reply_result(t, req,
			     wait_watchers(t, req, fi, (uintptr_t)arg));
		return;
	case VMGENID_FORCE_GEN_UPDATE:
	case VMGENID_FORCE_GEN_UPDATE_MIN:
	case VMGENID_NOTIFY:
		/* Who may, the log: the daemon's. */
		t->reasons |= VMGENID_SERVE_DAEMON;
		t->ops->ioctl(t->daemon, req, (unsigned int)cmd, fi, in_buf,
			      in_bufsz);
		return;
	default:
		refuse_ioctl(t, req, (unsigned int)cmd);
		return;
	}
}

static const struct cuse_lowlevel_ops transport_ops = {
	.init_done = transport_init_done,
	.open = transport_open,
	.read = transport_read,
	.write = transport_write,
	.release = transport_release,
	.ioctl = transport_ioctl,
	.poll = transport_poll,
};

const struct cuse_lowlevel_ops *vmgenid_transport_cuse_ops(void)
{
	return &transport_ops;
}

/* -- the daemon's own transitions ---------------------------------------- */

/* The daemon's bump (vmgenid_publisher_bump()), what it owes sent. */
int vmgenid_transport_bump(struct vmgenid_transport *t,
			   const struct vmgenid_bump *bump)
{
	int res = vmgenid_publisher_bump(t->pub, t->state, bump, &t->changes);

	apply(t);
	return res;
}

/* The counter published since (the thread's, or the daemon's own bump). */
int vmgenid_transport_adopt(struct vmgenid_transport *t)
{
	int res = vmgenid_state_adopt(t->state, &t->changes);

	apply(t);
	return res;
}

int vmgenid_transport_release(struct vmgenid_transport *t, uint64_t wid)
{
	int res = vmgenid_state_release(t->state, wid, &t->changes);

	apply(t);
	return res;
}

/* WAIT_WATCHERS calls whose deadline passed get ETIME. */
int vmgenid_transport_expire(struct vmgenid_transport *t, double now)
{
	int res = vmgenid_state_expire(t->state, now, &t->changes);

	apply(t);
	return res;
}

/* At the end: nothing may stay unanswered. */
void vmgenid_transport_abort(struct vmgenid_transport *t, int err)
{
	vmgenid_state_abort(t->state, err, &t->changes);
	apply(t);
	vmgenid_publisher_abort(t->pub, err);
}
