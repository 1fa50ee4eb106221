/* SPDX-License-Identifier: MIT */
/* The CUSE transport: one function per kernel file operation (transport.c). */
#ifndef VMGENID_TRANSPORT_H
#define VMGENID_TRANSPORT_H

/* Its includer defines FUSE_USE_VERSION, as libfuse asks. */
#include <stdint.h>

#include <cuse_lowlevel.h>
#include <fuse_lowlevel.h>

struct vmgenid_state;
struct vmgenid_publisher;
struct vmgenid_bump;
struct vmgenid_transport;

/*
 * The operations the daemon answers (transport.py): who the caller is,
 * the log, the status.  @daemon: what vmgenid_transport_new() was given
 * (a cffi handle of the Python transport).
 */
struct vmgenid_daemon_ops {
	void (*init_done)(void *daemon);
	void (*open)(void *daemon, fuse_req_t req, struct fuse_file_info *fi);
	void (*ioctl)(void *daemon, fuse_req_t req, unsigned int cmd,
		      struct fuse_file_info *fi, const void *in_buf,
		      size_t in_bufsz);
};

/*
 * What the C side refused or failed to send since the daemon last took
 * it, for one log line now and then (vmgenid_transport_take_report()).
 */
struct vmgenid_transport_report {
	unsigned int unknown_ioctls;	/* refused with EINVAL */
	unsigned int last_ioctl;	/* the last one's number */
	int32_t last_ioctl_pid;		/* and who sent it */
	unsigned int failed_replies;	/* fuse_reply_*() that failed */
	int last_reply_err;		/* the last one's -errno */
};

/* Why the loop (vmgenid_session_serve()) returned to the daemon: bits. */
#define VMGENID_SERVE_FDS	0x01	/* one of the daemon's fds is ready */
#define VMGENID_SERVE_TIMEOUT	0x02	/* its timeout passed */
#define VMGENID_SERVE_SIGNAL	0x04	/* a signal cut poll() short */
#define VMGENID_SERVE_BATCH	0x08	/* a full batch was answered */
#define VMGENID_SERVE_DAEMON	0x10	/* for the daemon: a request, a deadline */
#define VMGENID_SERVE_FIGURES	0x20	/* a figure the status shows changed */
#define VMGENID_SERVE_REPORT	0x40	/* a report to take (refusals) */

struct vmgenid_transport *
vmgenid_transport_new(struct vmgenid_state *state,
		      struct vmgenid_publisher *pub,
		      const struct vmgenid_daemon_ops *ops, void *daemon);
void vmgenid_transport_free(struct vmgenid_transport *t);
const struct cuse_lowlevel_ops *vmgenid_transport_cuse_ops(void);
int vmgenid_transport_take_report(struct vmgenid_transport *t,
				  struct vmgenid_transport_report *out);

/* For the loop (session.c). */
void vmgenid_transport_answer_interrupts(struct vmgenid_transport *t);
int vmgenid_transport_wanted(struct vmgenid_transport *t, int status_dirty);
unsigned int vmgenid_transport_take_reasons(struct vmgenid_transport *t);
int vmgenid_transport_bump(struct vmgenid_transport *t,
			   const struct vmgenid_bump *bump);
int vmgenid_transport_adopt(struct vmgenid_transport *t);
int vmgenid_transport_release(struct vmgenid_transport *t, uint64_t wid);
int vmgenid_transport_expire(struct vmgenid_transport *t, double now);
void vmgenid_transport_abort(struct vmgenid_transport *t, int err);
uint32_t vmgenid_transport_wait_timeout_ms(uint64_t arg);

#endif /* VMGENID_TRANSPORT_H */
