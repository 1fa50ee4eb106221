// SPDX-License-Identifier: GPL-2.0+
/*
 * roundtrip [-d DEV] [-n OPS] [-k ROUNDS]
 *
 * Operations per second of one round trip to the server behind DEV, one
 * process, one at a time:
 *
 *	read	read(4) by an outdated watcher: returns the counter at once
 *		(read does not acknowledge, so it stays outdated)
 *	ack	write(4) of the current counter by an up-to-date watcher
 *	ioctl	VMGENID_GET_OUTDATED_WATCHERS
 *
 * One VMGENID_FORCE_GEN_UPDATE (root) first makes the read descriptor
 * outdated.  Each op runs OPS times per round; the median round is
 * printed.  Used against the daemon and against the C reference server
 * (vmgenid_ref_server.c, DEV /dev/vmgenid-ref).
 *
 * Output, one line:
 *	roundtrip dev=DEV ops=OPS rounds=R read_ops_s=X ack_ops_s=Y
 *		  ioctl_ops_s=Z
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>

#include <linux/vmgenid.h>

#include "bench_util.h"

enum op { OP_READ, OP_ACK, OP_IOCTL, NR_OPS };

static void usage(void)
{
	fprintf(stderr, "usage: roundtrip [-d DEV] [-n OPS] [-k ROUNDS]\n");
	exit(64);
}

static void one_op(enum op op, int outdated_fd, int fd, uint32_t gen)
{
	uint32_t got;

	switch (op) {
	case OP_READ:
		if (read(outdated_fd, &got, sizeof(got)) != sizeof(got))
			die("read");
		break;
	case OP_ACK:
		if (write(fd, &gen, sizeof(gen)) != sizeof(gen))
			die("write");
		break;
	default:
		if (ioctl(fd, VMGENID_GET_OUTDATED_WATCHERS) < 0)
			die("VMGENID_GET_OUTDATED_WATCHERS");
	}
}

int main(int argc, char **argv)
{
	static const char *const names[NR_OPS] = { "read", "ack", "ioctl" };
	const char *dev = "/dev/vmgenid";
	long ops = 20000, i;
	int rounds = 3, opt, r, outdated_fd, fd;
	double *rate[NR_OPS], t0;
	uint32_t gen;
	enum op op;

	while ((opt = getopt(argc, argv, "d:n:k:")) != -1) {
		switch (opt) {
		case 'd':
			dev = optarg;
			break;
		case 'n':
			ops = atol(optarg);
			break;
		case 'k':
			rounds = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || ops < 1 || rounds < 1)
		usage();

	outdated_fd = open(dev, O_RDWR | O_CLOEXEC);
	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (outdated_fd < 0 || fd < 0)
		die("open");
	if (ioctl(fd, VMGENID_FORCE_GEN_UPDATE) < 0)
		die("VMGENID_FORCE_GEN_UPDATE");
	/* fd acknowledges once; every later ack finds it up to date. */
	if (read(fd, &gen, sizeof(gen)) != sizeof(gen) ||
	    write(fd, &gen, sizeof(gen)) != sizeof(gen))
		die("first ack");

	for (op = 0; op < NR_OPS; op++) {
		rate[op] = calloc(rounds, sizeof(double));
		if (!rate[op])
			die("calloc");
		for (i = 0; i < ops / 100 + 1; i++)	/* warm up */
			one_op(op, outdated_fd, fd, gen);
		for (r = 0; r < rounds; r++) {
			t0 = now_us();
			for (i = 0; i < ops; i++)
				one_op(op, outdated_fd, fd, gen);
			rate[op][r] = ops / ((now_us() - t0) / 1e6);
		}
	}

	printf("roundtrip dev=%s ops=%ld rounds=%d", dev, ops, rounds);
	for (op = 0; op < NR_OPS; op++)
		printf(" %s_ops_s=%.0f", names[op], median(rate[op], rounds));
	printf("\n");
	return 0;
}
