// SPDX-License-Identifier: GPL-2.0+
/*
 * orchestrator - the seed's example 4: pause a service until every watcher
 * on the system has handled a VM generation change.
 *
 *	orchestrator [-n COUNT] [-t MS]
 *
 *	-n COUNT	exit after COUNT generation changes were handled;
 *			0, the default, runs until killed
 *	-t MS		VMGENID_WAIT_WATCHERS timeout (default 5000, as the
 *			seed; 0 waits without a timeout)
 *
 * Blocked in read() until the generation changes, then: pause the service,
 * acknowledge its own watcher, wait (VMGENID_WAIT_WATCHERS) until no
 * watcher is outdated, i.e. every component has reseeded and acknowledged,
 * and resume the service.  After a timeout the service resumes anyway
 * (the seed's choice), naming how many watchers are still outdated.
 *
 * Output (stdout, one line each):
 *	ready				device open, about to block in read()
 *	change: generation N		read() returned N
 *	pause: generation N		the service is paused
 *	ack: generation N		its own watcher acknowledged N
 *	wait: all watchers done		VMGENID_WAIT_WATCHERS returned 0
 *	wait: ETIME, K outdated		... timed out; K from
 *					VMGENID_GET_OUTDATED_WATCHERS
 *	wait: EINTR			a signal, or a newer change: see below
 *	ack: generation N superseded	write() said EINVAL: a newer change
 *	resume: generation N		the service runs again
 *	device: <ERRNO>			an error from the device (client rule)
 *	reopen: ok			a new descriptor
 *
 * VMGENID_WAIT_WATCHERS fails with EINTR on a signal, and also when a newer
 * change makes the orchestrator itself outdated.  Either way it handles
 * the update again: the write() of the old value then says EINVAL if the
 * counter moved on (read() returns the newer value, and the service stays
 * paused), else it acknowledges nothing new and the wait starts over.
 *
 * Client rule (docs/interface.rst): any other error means the
 * daemon went away and a change may have happened.  The components reseed
 * and reopen by that same rule, but their new descriptors start up to
 * date, so there is nothing left to wait for: pause, reopen, resume.
 *
 * Exit: 0 after COUNT changes, 1 on an unexpected error, 64 with the
 * usage line on stderr for an unknown option, an operand, or a COUNT or
 * MS that is not a decimal number of 0 or more.
 */
#define _GNU_SOURCE		/* strerrorname_np */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/vmgenid.h>

#include "client.h"

static unsigned long wait_timeout_ms = 5000;
static int paused;

static void pause_service(const char *why)
{
	if (paused)
		return;
	paused = 1;
	printf("pause: %s\n", why);
}

static void resume_service(const char *why)
{
	paused = 0;
	printf("resume: %s\n", why);
}

/* Open the device, waiting (not spinning) while the daemon is away. */
static int open_vmgenid(void)
{
	int fd = open_vmgenid_flags(0);

	if (fd < 0) {
		printf("open: %s\n", ename(errno));
		exit(1);
	}
	return fd;
}

/* The client rule: the daemon went away (err). */
static int device_lost(int fd, int err)
{
	char why[48];

	pause_service(report_device_error(err, why, sizeof(why)));
	close(fd);
	fd = open_vmgenid();
	printf("reopen: ok\n");
	resume_service(why);
	return fd;
}

/*
 * orchestrator - manages multiple apps and libraries used by a service
 * and tries to make sure all sensitive components gracefully handle
 * VM generation changes.
 * Following function is called on detection of a VM generation change.
 *
 * Returns 0 once the service resumed, else -1 with errno: EINVAL (a newer
 * change), EINTR (try again) or a device error (the client rule).
 */
static int handle_vmgen_update(int vmgen_fd, unsigned int new_gen_id)
{
	char why[32];
	int ret;

	snprintf(why, sizeof(why), "generation %u", new_gen_id);

	// pause until all components have handled event
	pause_service(why);

	// confirm *this* watcher as up-to-date
	if (write(vmgen_fd, &new_gen_id, sizeof(new_gen_id)) < 0)
		return -1;
	printf("ack: generation %u\n", new_gen_id);

	// wait for all *others* for at most 5 seconds.
	ret = ioctl(vmgen_fd, VMGENID_WAIT_WATCHERS, wait_timeout_ms);
	if (ret == 0) {
		printf("wait: all watchers done\n");
	} else if (errno == ETIME) {
		ret = ioctl(vmgen_fd, VMGENID_GET_OUTDATED_WATCHERS);
		if (ret < 0)
			return -1;
		printf("wait: ETIME, %d outdated\n", ret);
	} else {
		if (errno == EINTR)
			printf("wait: EINTR\n");
		return -1;
	}

	// all apps on the system have rebuilt worlds
	resume_service(why);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: orchestrator [-n COUNT] [-t MS]\n");
	exit(EXIT_USAGE);
}

int main(int argc, char **argv)
{
	unsigned long max_changes = 0, changes = 0;
	unsigned int genid;
	int fd, opt, ret;
	ssize_t n;

	setvbuf(stdout, NULL, _IOLBF, 0);

	while ((opt = getopt(argc, argv, "n:t:")) != -1) {
		switch (opt) {
		case 'n':
			if (parse_count(optarg, &max_changes))
				usage();
			break;
		case 't':
			if (parse_count(optarg, &wait_timeout_ms))
				usage();
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	fd = open(VMGENID_DEV, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("open: %s\n", ename(errno));
		return 1;
	}
	printf("ready\n");

	while (!max_changes || changes < max_changes) {
		/* Blocks until the generation changes. */
		n = read(fd, &genid, sizeof(genid));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0 && errno != EINVAL) {
			fd = device_lost(fd, errno);
			continue;
		}
		if (n != sizeof(genid)) {
			printf("read: unexpected ret=%zd\n", n);
			return 1;
		}
		printf("change: generation %u\n", genid);

		do
			ret = handle_vmgen_update(fd, genid);
		while (ret < 0 && errno == EINTR);

		if (ret == 0) {
			changes++;
		} else if (errno == EINVAL) {
			/* A newer change: read() returns it at once. */
			printf("ack: generation %u superseded\n", genid);
		} else {
			fd = device_lost(fd, errno);
		}
	}

	close(fd);
	return 0;
}
