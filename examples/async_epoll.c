// SPDX-License-Identifier: GPL-2.0+
/*
 * async_epoll - the seed's example 2: /dev/vmgenid in an epoll event loop.
 *
 *	async_epoll [-n COUNT]
 *
 *	-n COUNT	exit after COUNT generation changes were handled
 *			(acknowledged); 0, the default, runs until killed
 *
 * The device is opened O_NONBLOCK and registered for EPOLLIN next to the
 * rest of the application (here a signalfd: SIGINT and SIGTERM end the
 * loop cleanly).  EPOLLIN is reported while this watcher is outdated, so
 * the handler reads the new counter, reseeds, and write()s it back; the
 * level-triggered EPOLLIN then stops.
 *
 * Output (stdout, one line each):
 *	ready				registered, about to wait in epoll_wait()
 *	change: generation N		read() returned N
 *	reseed: <why>, secret <hex>	the world was rebuilt
 *	ack: generation N		write() acknowledged N
 *	ack: generation N superseded	EINVAL: changed again since the read;
 *					EPOLLIN stays and brings the new value
 *	device: <ERRNO>			an error from the device (client rule)
 *	reopen: ok			a new descriptor, registered again
 *	exit: <SIGNAL>			SIGINT or SIGTERM arrived
 *
 * Client rule (docs/interface.rst): EINTR and EAGAIN mean "try
 * again" (EAGAIN: nothing to read yet), EINVAL means "the counter moved on";
 * any other error (the daemon went away: poll reports EPOLLERR, read()
 * ENOTCONN) means a change may have happened: reseed, then reopen.
 *
 * Exit: 0 after COUNT changes or on SIGINT/SIGTERM, 1 on an unexpected
 * error, 64 with the usage line on stderr for an unknown option, an
 * operand, or a COUNT that is not a decimal number of 0 or more.
 */
#define _GNU_SOURCE		/* strerrorname_np, sigabbrev_np */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <linux/vmgenid.h>

#include "client.h"

#define SECRET_SIZE		16
#define MAX_EPOLL_EVENTS_PER_RUN 8
#define EPOLL_RUN_TIMEOUT	-1	/* no timeout: events only */

static int epfd;
static unsigned long max_changes;	/* 0: forever */
static unsigned long changes;		/* acknowledged so far */
static unsigned char secret[SECRET_SIZE];

static void die(const char *what)
{
	const char *name = strerrorname_np(errno);

	printf("%s: %s\n", what, name ? name : "?");
	exit(1);
}

/* Because of a VM generation change, rebuild the world. */
static void reseed_app_env(const char *why)
{
	char hex[2 * SECRET_SIZE + 1];
	int i;

	if (getrandom(secret, sizeof(secret), 0) != sizeof(secret))
		die("getrandom");
	for (i = 0; i < SECRET_SIZE; i++)
		sprintf(hex + 2 * i, "%02x", secret[i]);
	printf("reseed: %s, secret %s\n", why, hex);
}

/* Register fd for EPOLLIN. */
static void watch(int fd)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.fd = fd;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev))
		die("epoll_ctl");
}

/* Open the device and register it, waiting while the daemon is away. */
static int open_vmgenid(void)
{
	int fd = open_vmgenid_flags(O_NONBLOCK);

	if (fd < 0)
		die("open");
	watch(fd);
	return fd;
}

/*
 * The client rule: the daemon went away (err), a change may have happened.
 * Reseed at once, then reopen (closing the old descriptor also drops it
 * from the epoll set).  The new descriptor starts up to date: a change made
 * while the daemon was down (after the reseed above) would never be
 * reported on it, so reseed once more after the reopen.
 */
static int device_lost(int fd, int err)
{
	char why[48];

	reseed_app_env(report_device_error(err, why, sizeof(why)));
	close(fd);
	fd = open_vmgenid();
	printf("reopen: ok\n");
	reseed_app_env("reopened");
	return fd;
}

/* Returns the descriptor to watch from now on (a new one after a reopen). */
static int handle_io_on_vmgenfd(int vmgenfd)
{
	unsigned int genid;
	char why[32];
	ssize_t n;

	/*
	 * read new gen ID - we need it to confirm we've handled update.
	 *
	 * The seed reseeded first and read afterwards; the review found that
	 * racy: with a second change between the reseed and the read, the
	 * value read (and acknowledged) is one the reseed never saw.  Read
	 * first, then reseed, then acknowledge what was read.
	 */
	n = read(vmgenfd, &genid, sizeof(genid));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return vmgenfd;		/* nothing yet: epoll says when */
	if (n < 0 && errno != EINVAL)
		return device_lost(vmgenfd, errno);
	if (n != sizeof(genid)) {
		printf("read: unexpected ret=%zd\n", n);
		exit(1);
	}
	printf("change: generation %u\n", genid);

	// because of VM generation change, we need to rebuild world
	snprintf(why, sizeof(why), "generation %u", genid);
	reseed_app_env(why);

	// confirm we're done handling the gen ID update
	n = write(vmgenfd, &genid, sizeof(genid));
	if (n == sizeof(genid)) {
		printf("ack: generation %u\n", genid);
		changes++;
	} else if (n < 0 && errno == EINVAL) {
		printf("ack: generation %u superseded\n", genid);
	} else if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
		;			/* still outdated: EPOLLIN again */
	} else {
		return device_lost(vmgenfd, n < 0 ? errno : EIO);
	}
	return vmgenfd;
}

/* The rest of the application: here only its signalfd. */
static void handle_some_other_part_of_the_app(int fd)
{
	struct signalfd_siginfo si;
	const char *name;

	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	name = sigabbrev_np(si.ssi_signo);
	printf("exit: SIG%s\n", name ? name : "?");
	exit(0);
}

static int open_signalfd(void)
{
	sigset_t mask;
	int fd;

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &mask, NULL))
		die("sigprocmask");
	fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0)
		die("signalfd");
	watch(fd);
	return fd;
}

int main(int argc, char **argv)
{
	struct epoll_event events[MAX_EPOLL_EVENTS_PER_RUN];
	int vmgenfd;

	setvbuf(stdout, NULL, _IOLBF, 0);

	if (parse_count_args(argc, argv, "async_epoll", &max_changes))
		return EXIT_USAGE;

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1");

	vmgenfd = open(VMGENID_DEV, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (vmgenfd < 0)
		die("open");

	// register vmgenid for polling
	watch(vmgenfd);

	// register other parts of your app for polling
	open_signalfd();

	printf("ready\n");
	while (!max_changes || changes < max_changes) {
		// wait for something to do...
		int nfds = epoll_wait(epfd, events, MAX_EPOLL_EVENTS_PER_RUN,
				      EPOLL_RUN_TIMEOUT);
		if (nfds < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}

		// for each ready fd
		for (int i = 0; i < nfds; i++) {
			int fd = events[i].data.fd;

			if (fd == vmgenfd)
				vmgenfd = handle_io_on_vmgenfd(vmgenfd);
			else
				handle_some_other_part_of_the_app(fd);
		}
	}

	close(vmgenfd);
	return 0;
}
