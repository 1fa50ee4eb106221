// SPDX-License-Identifier: GPL-2.0+
/*
 * vmgenid_ref_server [DEVNAME]
 *
 * Test-only reference for the benchmarks (roundtrip.c, fanout.c,
 * orchestrate.c): the smallest C CUSE server (libfuse's cuse_lowlevel API,
 * as libfuse's example/cuse.c) that answers the benchmarked requests with
 * the daemon's semantics (docs/interface.rst), so the daemon's figures can
 * be set against what CUSE itself costs.  Serves /dev/DEVNAME (default
 * vmgenid-ref), single-threaded, foreground.
 *
 *	open	a watcher, up to date
 *	read	n < 4: EINVAL; outdated: the counter (4 bytes); up to date:
 *		O_NONBLOCK EAGAIN, else waits for the next bump
 *	write	n != 4 or value != counter: EINVAL; else acknowledge, 4
 *	ioctl	GET_OUTDATED_WATCHERS: the count; WAIT_WATCHERS: EINTR if the
 *		caller is outdated, else 0 once none is (no timeout);
 *		FORCE_GEN_UPDATE: counter + 1 (no privilege check, no state
 *		file), waking every read (and every WAIT_WATCHERS: EINTR);
 *		anything else: EINVAL
 *	release	drops the watcher (and the outdated count if outdated)
 *
 * Not a driver: no interrupts (a signalled waiter stays until the next
 * bump), no poll, no timeouts.  Not installed: built by `make -C native`
 * into native/build/bench/.
 */
#define FUSE_USE_VERSION 31
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuse_lowlevel.h>
#include <fuse_opt.h>

#include <linux/vmgenid.h>

struct watcher {
	uint32_t acked;
};

/* Requests answered later: blocked reads, WAIT_WATCHERS callers. */
struct waiting {
	fuse_req_t *reqs;
	size_t len, cap;
};

static uint32_t counter;
static unsigned int watchers, outdated;
static struct waiting reads, waits;

static int wait_later(struct waiting *w, fuse_req_t req)
{
	if (w->len == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 64;
		fuse_req_t *reqs = realloc(w->reqs, cap * sizeof(*reqs));

		if (!reqs)
			return -ENOMEM;
		w->reqs = reqs;
		w->cap = cap;
	}
	w->reqs[w->len++] = req;
	return 0;
}

static void drop_outdated(void)
{
	size_t i;

	if (--outdated)
		return;
	for (i = 0; i < waits.len; i++)
		fuse_reply_ioctl(waits.reqs[i], 0, NULL, 0);
	waits.len = 0;
}

static struct watcher *watcher_of(struct fuse_file_info *fi)
{
	return (struct watcher *)(uintptr_t)fi->fh;
}

static void ref_open(fuse_req_t req, struct fuse_file_info *fi)
{
	struct watcher *w = malloc(sizeof(*w));

	if (!w) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	w->acked = counter;
	watchers++;
	fi->fh = (uintptr_t)w;
	fuse_reply_open(req, fi);
}

static void ref_read(fuse_req_t req, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)off;
	if (size == 0)
		fuse_reply_buf(req, NULL, 0);
	else if (size < sizeof(counter))
		fuse_reply_err(req, EINVAL);
	else if (watcher_of(fi)->acked != counter)
		fuse_reply_buf(req, (const char *)&counter, sizeof(counter));
	else if (fi->flags & O_NONBLOCK)
		fuse_reply_err(req, EAGAIN);
	else if (wait_later(&reads, req))
		fuse_reply_err(req, ENOMEM);
}

static void ref_write(fuse_req_t req, const char *buf, size_t size,
		      off_t off, struct fuse_file_info *fi)
{
	struct watcher *w = watcher_of(fi);
	uint32_t value;

	(void)off;
	if (size != sizeof(value)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	memcpy(&value, buf, sizeof(value));
	if (value != counter) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (w->acked != counter) {
		w->acked = counter;
		drop_outdated();
	}
	fuse_reply_write(req, size);
}

static void ref_ioctl(fuse_req_t req, int cmd, void *arg,
		      struct fuse_file_info *fi, unsigned int flags,
		      const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	size_t i;

	(void)arg; (void)flags; (void)in_buf; (void)in_bufsz; (void)out_bufsz;
	switch ((unsigned int)cmd) {
	case VMGENID_GET_OUTDATED_WATCHERS:
		fuse_reply_ioctl(req, outdated, NULL, 0);
		break;
	case VMGENID_WAIT_WATCHERS:
		if (watcher_of(fi)->acked != counter)
			fuse_reply_err(req, EINTR);
		else if (!outdated)
			fuse_reply_ioctl(req, 0, NULL, 0);
		else if (wait_later(&waits, req))
			fuse_reply_err(req, ENOMEM);
		break;
	case VMGENID_FORCE_GEN_UPDATE:
		/* Every watcher, up to date or not, is outdated now. */
		counter++;
		outdated = watchers;
		for (i = 0; i < reads.len; i++)
			fuse_reply_buf(reads.reqs[i], (const char *)&counter,
				       sizeof(counter));
		reads.len = 0;
		for (i = 0; i < waits.len; i++)
			fuse_reply_err(waits.reqs[i], EINTR);
		waits.len = 0;
		fuse_reply_ioctl(req, 0, NULL, 0);
		break;
	default:
		fuse_reply_err(req, EINVAL);
	}
}

static void ref_release(fuse_req_t req, struct fuse_file_info *fi)
{
	struct watcher *w = watcher_of(fi);

	watchers--;
	if (w->acked != counter)
		drop_outdated();
	free(w);
	fuse_reply_err(req, 0);
}

static const struct cuse_lowlevel_ops ref_ops = {
	.open		= ref_open,
	.read		= ref_read,
	.write		= ref_write,
	.ioctl		= ref_ioctl,
	.release	= ref_release,
};

int main(int argc, char **argv)
{
	char dev_name[128];
	const char *dev_info_argv[] = { dev_name };
	char *fuse_argv[] = { argv[0], "-f", "-s", NULL };
	struct cuse_info ci;

	if (argc > 2) {
		fprintf(stderr, "usage: vmgenid_ref_server [DEVNAME]\n");
		return 64;
	}
	snprintf(dev_name, sizeof(dev_name), "DEVNAME=%s",
		 argc == 2 ? argv[1] : "vmgenid-ref");
	memset(&ci, 0, sizeof(ci));
	ci.dev_info_argc = 1;
	ci.dev_info_argv = dev_info_argv;
	return cuse_lowlevel_main(3, fuse_argv, &ci, &ref_ops, NULL);
}
