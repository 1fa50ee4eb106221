// SPDX-License-Identifier: GPL-2.0+
/*
 * watchdog - the seed's example 1: a watchdog thread blocked in read().
 *
 *	watchdog [-n COUNT]
 *
 *	-n COUNT	exit after COUNT generation changes were handled
 *			(acknowledged); 0, the default, runs until killed
 *
 * The thread opens /dev/vmgenid and loops: read() blocks until the VM
 * generation changes and returns the new counter; the program reseeds
 * (a new random secret stands for "the world"), then write()s the counter
 * back to acknowledge it, so VMGENID_WAIT_WATCHERS callers stop waiting
 * for this watcher.
 *
 * Output (stdout, one line each):
 *	ready				device open, about to block in read()
 *	change: generation N		read() returned N
 *	reseed: <why>, secret <hex>	the world was rebuilt
 *	ack: generation N		write() acknowledged N
 *	ack: generation N superseded	write() said EINVAL: the counter moved
 *					on (another change): read() again
 *	device: <ERRNO>			an error from the device: the client
 *					rule (below) reseeds, then reopens
 *	reopen: ok			a new descriptor (up to date)
 *
 * Client rule (docs/interface.rst): EINTR (a signal, even under
 * SA_RESTART: the kernel does not restart a CUSE read) and EAGAIN mean
 * "try again", EINVAL means "the counter moved on"; any other error means
 * the daemon went away and a change may have happened: reseed, then
 * reopen (waiting, not spinning, while the node is missing).
 *
 * Exit: 0 after COUNT changes, 1 on an unexpected error, 64 with the
 * usage line on stderr for an unknown option, an operand, or a COUNT that
 * is not a decimal number of 0 or more.
 */
#define _GNU_SOURCE		/* strerrorname_np */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <linux/vmgenid.h>

#include "client.h"

#define SECRET_SIZE	16

static unsigned long max_changes;	/* 0: forever */
static unsigned long changes;		/* acknowledged so far */
static unsigned char secret[SECRET_SIZE];
static int failed;

static int atomic_read(int *v)
{
	return __atomic_load_n(v, __ATOMIC_ACQUIRE);
}

static void atomic_set(int *v, int i)
{
	__atomic_store_n(v, i, __ATOMIC_RELEASE);
}

/* Because of a VM generation change, rebuild the world. */
static void reseed_app_env(const char *why)
{
	char hex[2 * SECRET_SIZE + 1];
	int i;

	if (getrandom(secret, sizeof(secret), 0) != sizeof(secret)) {
		perror("getrandom");
		exit(1);
	}
	for (i = 0; i < SECRET_SIZE; i++)
		sprintf(hex + 2 * i, "%02x", secret[i]);
	printf("reseed: %s, secret %s\n", why, hex);
}

static void reseed_for_generation(unsigned int genid)
{
	char why[32];

	snprintf(why, sizeof(why), "generation %u", genid);
	reseed_app_env(why);
}

/* Open the device, waiting (not spinning) while the daemon is away. */
static int open_vmgenid(void)
{
	return open_vmgenid_flags(0);
}

/*
 * The client rule: the daemon went away (err), a change may have happened.
 * Reseed at once, then reopen.  The new descriptor starts up to date: a
 * change made while the daemon was down (after the reseed above) would
 * never be reported on it, so reseed once more after the reopen.
 * Returns the new descriptor, or -1.
 */
static int device_lost(int fd, int err)
{
	char why[48];

	reseed_app_env(report_device_error(err, why, sizeof(why)));
	close(fd);
	fd = open_vmgenid();
	if (fd < 0) {
		printf("reopen: %s\n", ename(errno));
		return -1;
	}
	printf("reopen: ok\n");
	reseed_app_env("reopened");
	return fd;
}

/* The program decides to stop once it handled max_changes changes. */
static void handled_change(int *thread_active)
{
	if (max_changes && ++changes >= max_changes)
		atomic_set(thread_active, 0);
}

static void watchdog_thread_handler(int *thread_active)
{
	unsigned int genid;
	ssize_t n;
	int fd = open(VMGENID_DEV, O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		printf("open: %s\n", ename(errno));
		failed = 1;
		return;
	}
	printf("ready\n");

	do {
		// read new gen ID - blocks until VM generation changes
		n = read(fd, &genid, sizeof(genid));
		if (n != sizeof(genid)) {
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n >= 0 || errno == EINVAL) {
				printf("read: unexpected ret=%zd\n", n);
				failed = 1;
				break;
			}
			fd = device_lost(fd, errno);
			if (fd < 0) {
				failed = 1;
				return;
			}
			continue;
		}
		printf("change: generation %u\n", genid);

		// because of VM generation change, we need to rebuild world
		reseed_for_generation(genid);

		// confirm we're done handling gen ID update
		n = write(fd, &genid, sizeof(genid));
		if (n == sizeof(genid)) {
			printf("ack: generation %u\n", genid);
			handled_change(thread_active);
		} else if (n < 0 && errno == EINVAL) {
			/* Changed again since the read: read the new value. */
			printf("ack: generation %u superseded\n", genid);
		} else if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
			/* Not acknowledged: read() returns the value again. */
			continue;
		} else {
			fd = device_lost(fd, n < 0 ? errno : EIO);
			if (fd < 0) {
				failed = 1;
				return;
			}
		}
	} while (atomic_read(thread_active));

	close(fd);
}

static void *watchdog_thread(void *arg)
{
	watchdog_thread_handler(arg);
	return NULL;
}

int main(int argc, char **argv)
{
	static int thread_active = 1;
	pthread_t thread;
	int err;

	setvbuf(stdout, NULL, _IOLBF, 0);

	if (parse_count_args(argc, argv, "watchdog", &max_changes))
		return EXIT_USAGE;

	err = pthread_create(&thread, NULL, watchdog_thread, &thread_active);
	if (err) {
		fprintf(stderr, "pthread_create: %s\n", strerror(err));
		return 1;
	}
	/* The rest of the application would run here. */
	pthread_join(thread, NULL);
	return failed;
}
