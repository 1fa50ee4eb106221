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

/* The operations the daemon answers (transport.py): who the caller is,
 * the log, the hooks. */
struct vmgenid_daemon_ops {
	void (*init_done)(void *userdata);
	void (*open)(fuse_req_t req, struct fuse_file_info *fi);
	void (*ioctl)(fuse_req_t req, int cmd, void *arg,
		      struct fuse_file_info *fi, unsigned int flags,
		      const void *in_buf, size_t in_bufsz, size_t out_bufsz);
};

/* What the daemon's loop reads and clears between two serve() calls. */
struct vmgenid_transport_flags {
	int daemon_wanted;	/* a request the daemon's loop must look at */
	int figures_changed;	/* an open, ack or close changed a figure */
	int status_dirty;	/* the daemon's: figures need no wake-up now */
	double last_request;	/* CLOCK_MONOTONIC of the last batch */
};

struct vmgenid_transport *
vmgenid_transport_new(struct vmgenid_state *state,
		      struct vmgenid_publisher *pub,
		      const struct vmgenid_daemon_ops *daemon);
void vmgenid_transport_free(struct vmgenid_transport *t);
const struct cuse_lowlevel_ops *vmgenid_transport_cuse_ops(void);
struct vmgenid_transport_flags *
vmgenid_transport_flags(struct vmgenid_transport *t);

void vmgenid_transport_answer_interrupts(struct vmgenid_transport *t);
int vmgenid_transport_bump(struct vmgenid_transport *t,
			   const struct vmgenid_bump *bump);
int vmgenid_transport_adopt(struct vmgenid_transport *t);
int vmgenid_transport_ack(struct vmgenid_transport *t, uint64_t wid,
			  uint32_t counter);
int vmgenid_transport_release(struct vmgenid_transport *t, uint64_t wid);
int vmgenid_transport_expire(struct vmgenid_transport *t, double now);
void vmgenid_transport_abort(struct vmgenid_transport *t, int err);
uint32_t vmgenid_wait_timeout_ms(uint64_t arg);

#endif /* VMGENID_TRANSPORT_H */
