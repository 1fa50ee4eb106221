/* SPDX-License-Identifier: GPL-2.0+ */
/*
 * What the C benchmarks share: the clock, the median, and for the two
 * with N blocked children (fanout.c, orchestrate.c) their command line,
 * opening the device and forking, the wait until every child is asleep in
 * read() on its fd (so that a trigger never races a waiter still on its
 * way to block), the daemon barrier, and the reaping.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/vmgenid.h>

#define SYSCALL_READ	0	/* x86_64 */
#define BLOCK_TIMEOUT_S	300	/* only rescues a hang: emulation is slow */

static inline double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static inline void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, strerror(errno));
	exit(1);
}

/* A watcher of its own on @dev (the daemon's or the reference server's). */
static inline int open_device(const char *dev)
{
	int fd = open(dev, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		die("open device");
	return fd;
}

/* fork() for the children: a failure ends the run, as any setup error. */
static inline pid_t fork_or_die(void)
{
	pid_t pid = fork();

	if (pid < 0)
		die("fork");
	return pid;
}

/*
 * True if @pid sleeps (state S) inside read(@fd, ...).  /proc/PID/syscall
 * holds "running" unless the task is blocked in a system call, then the
 * number and the arguments: "0 0x<fd> ...".
 */
static inline int asleep_in_read(pid_t pid, int fd)
{
	char path[64], buf[256], state = 0;
	long nr = -1, arg0 = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fgets(buf, sizeof(buf), f)) {
		char *end = strrchr(buf, ')');

		if (end && end[1] == ' ')
			state = end[2];
	}
	fclose(f);
	if (state != 'S')
		return 0;

	snprintf(path, sizeof(path), "/proc/%d/syscall", pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%ld 0x%lx", &nr, &arg0) != 2)
		nr = -1;
	fclose(f);
	return nr == SYSCALL_READ && arg0 == fd;
}

/* Wait until each of @pids[i] sleeps in read(@fds[i]); exits on timeout. */
static inline void wait_all_asleep_in_read(const pid_t *pids,
					   const volatile int *fds, int n)
{
	double deadline = now_us() + BLOCK_TIMEOUT_S * 1e6;
	int i;

	for (i = 0; i < n; i++) {
		while (fds[i] < 0 || !asleep_in_read(pids[i], fds[i])) {
			if (now_us() > deadline) {
				fprintf(stderr, "child %d never blocked in "
					"read(%d)\n", pids[i], fds[i]);
				exit(1);
			}
			usleep(1000);
		}
	}
}

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median of @v[0..n), which it sorts. */
static inline double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), compare_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct waiters_opts {
	const char *dev;	/* -d, default /dev/vmgenid */
	int reference;		/* -r */
	int rounds;		/* -k, default 5 */
	int n;			/* the children */
};

/* PROG [-d DEV] [-r] [-k ROUNDS] N */
static inline void parse_waiters_opts(int argc, char **argv,
				      struct waiters_opts *o)
{
	int opt;

	o->dev = "/dev/vmgenid";
	o->reference = 0;
	o->rounds = 5;
	while ((opt = getopt(argc, argv, "d:rk:")) != -1) {
		switch (opt) {
		case 'd':
			o->dev = optarg;
			break;
		case 'r':
			o->reference = 1;
			break;
		case 'k':
			o->rounds = atoi(optarg);
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc - 1 || o->rounds < 1)
		goto usage;
	o->n = atoi(argv[optind]);
	if (o->n >= 1)
		return;
usage:
	fprintf(stderr, "usage: %s [-d DEV] [-r] [-k ROUNDS] N\n", argv[0]);
	exit(64);
}

/*
 * The daemon answers one request at a time, in order: once this round
 * trip returns it has taken every read request sent before it.  Also
 * checks that nobody is outdated.
 */
static inline void device_barrier(int ctl)
{
	int outdated = ioctl(ctl, VMGENID_GET_OUTDATED_WATCHERS);

	if (outdated != 0) {
		fprintf(stderr, "GET_OUTDATED_WATCHERS: %d (%s)\n", outdated,
			outdated < 0 ? strerror(errno) : "expected 0");
		exit(1);
	}
}

/*
 * Before a trigger: every child asleep in read(); with a device (@ctl >=
 * 0) the daemon has taken those reads too.
 */
static inline void waiters_ready(const pid_t *pids, const volatile int *fds,
				 int n, int ctl)
{
	wait_all_asleep_in_read(pids, fds, n);
	if (ctl >= 0)
		device_barrier(ctl);
}

/* An eventfd whose readers all wake on a write, each taking one. */
static inline int semaphore_eventfd(void)
{
	int efd = eventfd(0, EFD_SEMAPHORE | EFD_CLOEXEC);

	if (efd < 0)
		die("eventfd");
	return efd;
}

/* Wait for every child; exit unless all exited 0. */
static inline void reap_children(const pid_t *pids, int n)
{
	int i, status, failed = 0;

	for (i = 0; i < n; i++) {
		if (waitpid(pids[i], &status, 0) < 0)
			die("waitpid");
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			failed++;
	}
	if (failed) {
		fprintf(stderr, "%d children failed\n", failed);
		exit(1);
	}
}

#endif /* BENCH_UTIL_H */
