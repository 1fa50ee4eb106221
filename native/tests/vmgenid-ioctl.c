// SPDX-License-Identifier: MIT
/*
 * vmgenid-ioctl [-d DEV] CMD [ARG]
 *
 * CMD: outdated | wait MS | force | force-min N | notify
 *
 * Opens DEV (default /dev/vmgenid), does exactly one ioctl and, after it
 * returns, prints one line:
 *	ioctl=<VMGENID_...> ret=<int> errno=<ENAME or 0>
 * Exit: 0 if ret >= 0, 1 if ret < 0, 2 if open fails (after printing
 * "open errno=<ENAME>"), 64 on a usage error.
 */
#define _GNU_SOURCE		/* strerrorname_np */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/vmgenid.h>

#include "errname.h"

#define EXIT_USAGE 64

static void usage(void)
{
	fprintf(stderr,
		"usage: vmgenid-ioctl [-d DEV] CMD [ARG]\n"
		"  CMD: outdated | wait MS | force | force-min N | notify\n");
	exit(EXIT_USAGE);
}

/* Parses a decimal/0x number in [0, max]; exits on anything else. */
static unsigned long long parse_num(const char *s, unsigned long long max)
{
	unsigned long long v;
	char *end;

	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		usage();
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || v > max)
		usage();
	return v;
}

int main(int argc, char **argv)
{
	const char *dev = "/dev/vmgenid";
	const char *cmd, *name;
	unsigned long long arg = 0;
	__u32 min;
	int fd, ret, err, opt;

	setvbuf(stdout, NULL, _IOLBF, 0);

	while ((opt = getopt(argc, argv, "+d:")) != -1) {
		if (opt != 'd')
			usage();
		dev = optarg;
	}
	if (optind >= argc)
		usage();
	cmd = argv[optind++];

	if (!strcmp(cmd, "wait")) {
		if (argc - optind != 1)
			usage();
		arg = parse_num(argv[optind], ULONG_MAX);
	} else if (!strcmp(cmd, "force-min")) {
		if (argc - optind != 1)
			usage();
		arg = parse_num(argv[optind], UINT32_MAX);
	} else if (!strcmp(cmd, "outdated") || !strcmp(cmd, "force") ||
		   !strcmp(cmd, "notify")) {
		if (argc != optind)
			usage();
	} else {
		usage();
	}

	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("open errno=%s\n", errname(errno));
		return 2;
	}

	errno = 0;
	if (!strcmp(cmd, "outdated")) {
		name = "VMGENID_GET_OUTDATED_WATCHERS";
		ret = ioctl(fd, VMGENID_GET_OUTDATED_WATCHERS);
	} else if (!strcmp(cmd, "wait")) {
		name = "VMGENID_WAIT_WATCHERS";
		ret = ioctl(fd, VMGENID_WAIT_WATCHERS, (unsigned long)arg);
	} else if (!strcmp(cmd, "force")) {
		/* No argument, as v3 callers do: the daemon must ignore it. */
		name = "VMGENID_FORCE_GEN_UPDATE";
		ret = ioctl(fd, VMGENID_FORCE_GEN_UPDATE);
	} else if (!strcmp(cmd, "force-min")) {
		name = "VMGENID_FORCE_GEN_UPDATE_MIN";
		min = (__u32)arg;
		ret = ioctl(fd, VMGENID_FORCE_GEN_UPDATE_MIN, &min);
	} else {
		name = "VMGENID_NOTIFY";
		ret = ioctl(fd, VMGENID_NOTIFY);
	}
	err = ret < 0 ? errno : 0;

	printf("ioctl=%s ret=%d errno=%s\n", name, ret, errname(err));
	close(fd);
	return ret >= 0 ? 0 : 1;
}
