/* SPDX-License-Identifier: GPL-2.0+ */
/*
 * The glue the seed's examples leave out and all four share: error names,
 * sleeping, the -n COUNT option, the "device: <ERRNO>" line, and opening
 * the device by the client rule (wait for the node while the daemon
 * restarts; any other error is the caller's).
 */
#ifndef EXAMPLES_CLIENT_H
#define EXAMPLES_CLIENT_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define VMGENID_DEV		"/dev/vmgenid"
#define EXIT_USAGE		64
#define REOPEN_DELAY_MS		200

static inline const char *ename(int err)
{
	const char *name = strerrorname_np(err);

	return name ? name : "?";
}

static inline void sleep_ms(unsigned int ms)
{
	struct timespec ts = {
		.tv_sec = ms / 1000,
		.tv_nsec = (long)(ms % 1000) * 1000000L,
	};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/*
 * An option's count (-n COUNT; the orchestrator's -t MS too): a decimal
 * number, 0 or more, that fits an unsigned long.  Returns 0 with *@count
 * set, or -EINVAL (empty, negative, trailing characters, out of range) with
 * *@count untouched: the caller prints its usage line and exits EXIT_USAGE.
 */
static inline int parse_count(const char *s, unsigned long *count)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || !*s || *end || *s == '-')
		return -EINVAL;
	*count = v;
	return 0;
}

/*
 * The whole command line of the examples that take nothing but -n COUNT:
 * "@prog [-n COUNT]".  Returns 0 with *@count set (untouched without -n),
 * or EXIT_USAGE once the usage line is on stderr: the caller exits with it.
 * @prog, not argv[0], names the program so the usage line does not depend
 * on how it was started.
 */
static inline int parse_count_args(int argc, char **argv, const char *prog,
				   unsigned long *count)
{
	int opt;

	while ((opt = getopt(argc, argv, "n:")) != -1) {
		if (opt != 'n' || parse_count(optarg, count))
			goto usage;
	}
	if (optind == argc)
		return 0;
usage:
	fprintf(stderr, "usage: %s [-n COUNT]\n", prog);
	return EXIT_USAGE;
}

/*
 * The client rule's first step, the same in every example: the "device:
 * <ERRNO>" line for @err, and in @why (@size bytes) the reason the reseed
 * (or pause) that follows gives.  Returns @why.
 */
static inline const char *report_device_error(int err, char *why,
					      size_t size)
{
	printf("device: %s\n", ename(err));
	snprintf(why, size, "device error %s", ename(err));
	return why;
}

/* The device, opened with @flags added; -1 with errno on a real error. */
static inline int open_vmgenid_flags(int flags)
{
	int fd;

	for (;;) {
		fd = open(VMGENID_DEV, O_RDWR | O_CLOEXEC | flags);
		if (fd >= 0)
			return fd;
		switch (errno) {
		case EINTR:
			continue;
		case ENOENT:		/* node gone until the daemon is back */
		case ENODEV:
		case ENXIO:
		case ENOTCONN:
		case ECONNABORTED:
		case EIO:
			sleep_ms(REOPEN_DELAY_MS);
			continue;
		default:
			return -1;
		}
	}
}

#endif /* EXAMPLES_CLIENT_H */
