// SPDX-License-Identifier: MIT
/*
 * vmgenid-reader [-d DEV] [-n] [-a] [-h] [-i] [-s SIZE]
 *
 *	-d DEV	device (default /dev/vmgenid)
 *	-n	open with O_NONBLOCK (EAGAIN instead of blocking)
 *	-a	after a successful read, ack: write() the value back
 *	-h	at the end, print "holding"; keep the fd open until killed
 *	-i	install a no-op SIGUSR1 handler with SA_RESTART
 *		(a blocked read must still fail with EINTR)
 *	-s SIZE	read SIZE bytes instead of 4 (0..64, for EINVAL tests)
 *
 * Output lines (stdout, line-buffered):
 *	open				(fd open, about to read)
 *	read ret=<n> value=<u32> errno=<ENAME or 0>
 *	ack ret=<n> errno=<ENAME or 0>	(-a; only if read returned >= 4)
 *	holding				(-h)
 * value is the first 4 bytes read (0 if fewer were read).
 * Exit: 0 if the read (and the ack, with -a) succeeded, else 1;
 * 2 if open fails (after "open errno=<ENAME>"); 64 on a usage error.
 */
#define _GNU_SOURCE		/* strerrorname_np */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errname.h"

#define EXIT_USAGE	64
#define MAX_READ	64

static void usage(void)
{
	fprintf(stderr,
		"usage: vmgenid-reader [-d DEV] [-n] [-a] [-h] [-i] "
		"[-s SIZE]\n");
	exit(EXIT_USAGE);
}

static void noop_handler(int sig)
{
	(void)sig;
}

static void hold(void)
{
	printf("holding\n");
	fflush(stdout);
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	const char *dev = "/dev/vmgenid";
	unsigned char buf[MAX_READ];
	int nonblock = 0, ack = 0, do_hold = 0, handler = 0;
	size_t size = 4;
	uint32_t value = 0;
	ssize_t n, w;
	int fd, opt, err, ok;
	char *end;

	setvbuf(stdout, NULL, _IOLBF, 0);

	while ((opt = getopt(argc, argv, "d:nahis:")) != -1) {
		switch (opt) {
		case 'd':
			dev = optarg;
			break;
		case 'n':
			nonblock = 1;
			break;
		case 'a':
			ack = 1;
			break;
		case 'h':
			do_hold = 1;
			break;
		case 'i':
			handler = 1;
			break;
		case 's':
			errno = 0;
			size = strtoul(optarg, &end, 10);
			if (errno || !*optarg || *end || *optarg == '-' ||
			    size > MAX_READ)
				usage();
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	if (handler) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = noop_handler;
		sa.sa_flags = SA_RESTART;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGUSR1, &sa, NULL)) {
			perror("sigaction");
			return 1;
		}
	}

	fd = open(dev, O_RDWR | O_CLOEXEC | (nonblock ? O_NONBLOCK : 0));
	if (fd < 0) {
		printf("open errno=%s\n", errname(errno));
		return 2;
	}
	printf("open\n");
	fflush(stdout);

	memset(buf, 0, sizeof(buf));
	n = read(fd, buf, size);
	err = n < 0 ? errno : 0;
	if (n >= 4)
		memcpy(&value, buf, sizeof(value));
	printf("read ret=%zd value=%u errno=%s\n", n, value, errname(err));
	ok = n >= 0;

	if (ack && n >= 4) {
		w = write(fd, &value, sizeof(value));
		err = w < 0 ? errno : 0;
		printf("ack ret=%zd errno=%s\n", w, errname(err));
		if (w < 0)
			ok = 0;
	}

	if (do_hold)
		hold();

	close(fd);
	return ok ? 0 : 1;
}
