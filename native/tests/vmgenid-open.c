// SPDX-License-Identifier: MIT
/*
 * vmgenid-open [-d DEV] N
 *
 * Opens DEV (default /dev/vmgenid) up to N times without closing,
 * printing "opened K" after each success and, on the first failure,
 * "open errno=<ENAME> after K" (K = successful opens so far); then prints
 * "holding" and keeps every fd open until killed.  Used to test the
 * per-uid watcher cap (EDQUOT).  RLIMIT_NOFILE's soft limit is raised
 * toward the hard limit first, so EMFILE does not hide the cap.
 * Exit: 64 on a usage error; otherwise only by a signal.
 */
#define _GNU_SOURCE		/* strerrorname_np */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "errname.h"

#define EXIT_USAGE 64

static void usage(void)
{
	fprintf(stderr, "usage: vmgenid-open [-d DEV] N\n");
	exit(EXIT_USAGE);
}

static void raise_nofile(unsigned long n)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)n + 16;	/* stdio and slack */

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
		rl.rlim_cur = want;
		if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max)
			rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			perror("setrlimit");
	}
}

int main(int argc, char **argv)
{
	const char *dev = "/dev/vmgenid";
	unsigned long n, k;
	char *end;
	int opt;

	setvbuf(stdout, NULL, _IOLBF, 0);

	while ((opt = getopt(argc, argv, "d:")) != -1) {
		if (opt != 'd')
			usage();
		dev = optarg;
	}
	if (argc - optind != 1)
		usage();
	errno = 0;
	n = strtoul(argv[optind], &end, 10);
	if (errno || !*argv[optind] || *end || *argv[optind] == '-')
		usage();

	raise_nofile(n);

	for (k = 0; k < n; k++) {
		if (open(dev, O_RDWR | O_CLOEXEC) < 0) {
			printf("open errno=%s after %lu\n", errname(errno), k);
			break;
		}
		printf("opened %lu\n", k + 1);
	}

	printf("holding\n");
	fflush(stdout);
	for (;;)
		pause();
}
