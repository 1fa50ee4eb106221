// SPDX-License-Identifier: MIT
/*
 * vmgenid-fuzz -s SEED -t SECONDS -P DAEMON_PID [-d DEV] [-f PAGE_FD]
 *
 * Random operations on DEV (default /dev/vmgenid) for SECONDS: opens with
 * random flags, reads and writes of random sizes at random offsets (pread,
 * pwrite), random ioctl numbers, arguments and sizes, polls, O_NONBLOCK
 * toggles and closes; SIGALRM (no SA_RESTART) at random moments, its
 * period drawn anew before each operation that may block.  The same SEED gives
 * the same operations (the signals' timing differs from run to run).
 *
 * Checked after every operation: each errno is one docs/interface.rst lists for that
 * operation (or one the kernel itself answers before the daemon, named
 * below); a counter read never falls.  After every batch: the daemon
 * (DAEMON_PID) is alive, DEV is a character device that opens, and the
 * page (PAGE_FD, mapped read-only, if given) never fell either.
 *
 * Output: one "BAD ..." line per violation (then exit 1 at once), and at
 * the end one line:
 *	fuzz seed=<S> ops=<N> batches=<B> counter=<C> errnos=<E:n,...>
 * Exit: 0 if nothing was wrong, 1 on a violation, 64 on a usage error.
 */
#define _GNU_SOURCE		/* strerrorname_np */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <linux/vmgenid.h>

#include "errname.h"

#define EXIT_USAGE	64
#define MAX_FDS		16
#define BATCH		64
#define IOCTL_BUF	(1 << 14)	/* the largest _IOC_SIZE */
#define READ_BUF	(1 << 20)
#define MAX_ERRNO	256

/* What each operation may fail with; 0 ends a list. */
static const int open_errnos[] = { EDQUOT, 0 };
/*
 * EBADF: the kernel's, for a read on an O_WRONLY file (and a write on an
 * O_RDONLY one).  EINVAL is also the kernel's for pread/pwrite at a
 * negative offset or one the size would overflow; every other offset is
 * ignored (CUSE passes none to the daemon and opens the device seekable:
 * docs/interface.rst), so never ESPIPE.
 */
static const int read_errnos[] = { EINVAL, EAGAIN, EINTR, EBADF, 0 };
static const int write_errnos[] = { EINVAL, EBADF, 0 };
/*
 * EFAULT and ENOTTY: the kernel's, for an argument it cannot copy (a
 * _IOW/_IOR number with a bad pointer) and for a number it refuses itself.
 */
static const int ioctl_errnos[] = { EINVAL, EACCES, EOVERFLOW, EINTR, ETIME,
				    EFAULT, ENOTTY, 0 };
static const int poll_errnos[] = { EINTR, 0 };

static uint64_t rng_state;
static int fds[MAX_FDS];
static int nfds;
static uint32_t counter_seen;	/* the highest counter any read returned */
static unsigned long errno_count[MAX_ERRNO];
static unsigned char read_buf[READ_BUF];
static unsigned char ioctl_buf[IOCTL_BUF] __attribute__((aligned(8)));

static void usage(void)
{
	fprintf(stderr, "usage: vmgenid-fuzz -s SEED -t SECONDS -P PID "
		"[-d DEV] [-f PAGE_FD]\n");
	exit(EXIT_USAGE);
}

/* xorshift64*: small, and the same sequence for a seed everywhere. */
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static uint64_t below(uint64_t n)
{
	return rnd() % n;
}

static void on_alarm(int sig)
{
	(void)sig;
}

/*
 * SIGALRM every 0.1 to 20 ms from now on: it may hit any later call, and
 * one that fired before a call that blocks cannot leave that call waiting
 * forever (the next one interrupts it).
 */
static void alarm_soon(void)
{
	struct timeval every = { 0, 100 + below(20000) };
	struct itimerval it = { .it_value = every, .it_interval = every };

	setitimer(ITIMER_REAL, &it, NULL);
}

static void bad(const char *what, long ret, int err)
{
	printf("BAD %s ret=%ld errno=%s\n", what, ret, errname(err));
	exit(1);
}

static void check_errno(const char *what, long ret, int err,
			const int *allowed)
{
	if (ret >= 0)
		return;
	for (; *allowed; allowed++) {
		if (*allowed == err) {
			if (err < MAX_ERRNO)
				errno_count[err]++;
			return;
		}
	}
	bad(what, ret, err);
}

static void saw_counter(const char *what, uint32_t value)
{
	if (value < counter_seen) {
		printf("BAD %s counter fell: %u after %u\n", what, value,
		       counter_seen);
		exit(1);
	}
	counter_seen = value;
}

static int pick_fd(void)
{
	return nfds ? fds[below(nfds)] : -1;
}

static void op_open(const char *dev)
{
	static const int modes[] = { O_RDONLY, O_WRONLY, O_RDWR };
	static const int extra[] = { O_NONBLOCK, O_APPEND, O_SYNC, O_NOCTTY,
				     O_TRUNC, O_DSYNC, O_CLOEXEC };
	int flags = modes[below(3)], fd;
	unsigned int i;

	for (i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
		if (below(3) == 0)
			flags |= extra[i];
	if (nfds == MAX_FDS) {
		close(fds[0]);
		fds[0] = fds[--nfds];
	}
	fd = open(dev, flags);
	check_errno("open", fd, errno, open_errnos);
	if (fd >= 0)
		fds[nfds++] = fd;
}

static void op_close(void)
{
	int i;

	if (!nfds)
		return;
	i = below(nfds);
	if (close(fds[i]))
		bad("close", -1, errno);
	fds[i] = fds[--nfds];
}

static size_t random_size(void)
{
	static const size_t sizes[] = { 0, 1, 2, 3, 4, 5, 7, 8, 4095, 4096,
					65536, 131072, READ_BUF };

	return below(4) ? sizes[below(sizeof(sizes) / sizeof(sizes[0]))]
			: below(READ_BUF + 1);
}

static off_t random_offset(void)
{
	static const off_t offsets[] = { 1, 4, 4096, -1, INT64_MAX };

	return below(2) ? 0 : offsets[below(5)];
}

static void op_read(void)
{
	int fd = pick_fd();
	size_t size = random_size();
	off_t off = random_offset();
	ssize_t n;

	if (fd < 0)
		return;
	alarm_soon();		/* an up-to-date blocking read waits */
	n = off ? pread(fd, read_buf, size, off) : read(fd, read_buf, size);
	check_errno("read", n, errno, read_errnos);
	if (n == 4)
		saw_counter("read", *(uint32_t *)read_buf);
	else if (n > 0 || (n == 0 && size))
		bad("read size", n, 0);
}

static void op_write(void)
{
	int fd = pick_fd();
	size_t size = below(3) ? 4 : below(9);
	off_t off = random_offset();
	uint32_t value = below(2) ? counter_seen : (uint32_t)rnd();
	unsigned char buf[8];
	ssize_t n;

	if (fd < 0)
		return;
	memcpy(buf, &value, 4);
	memcpy(buf + 4, &value, 4);
	n = off ? pwrite(fd, buf, size, off) : write(fd, buf, size);
	check_errno("write", n, errno, write_errnos);
	if (n >= 0 && (size_t)n != size)
		bad("write size", n, 0);
}

/* The kernel's own ioctls ('X' freezes a filesystem, 'T' and 'f' are the
 * tty and file ones, 0x94 clones ranges): not the daemon's to answer, and
 * not safe to send at random as root. */
static int kernel_ioctl_type(unsigned int type)
{
	return type == 'X' || type == 'T' || type == 'f' || type == 0x94 ||
	       type == 0x12 || type == 0x21;
}

static unsigned int random_cmd(void)
{
	static const unsigned int known[] = {
		VMGENID_GET_OUTDATED_WATCHERS, VMGENID_WAIT_WATCHERS,
		VMGENID_FORCE_GEN_UPDATE, VMGENID_NOTIFY,
		VMGENID_FORCE_GEN_UPDATE_MIN,
	};
	unsigned int cmd;

	switch (below(3)) {
	case 0:
		return known[below(5)];
	case 1:		/* ours, with any number, direction and size */
		return _IOC(below(4), VMGENID_IOCTL, below(256),
			    below(IOCTL_BUF));
	default:
		do
			cmd = rnd();
		while (kernel_ioctl_type(_IOC_TYPE(cmd)));
		return cmd;
	}
}

static unsigned long random_arg(unsigned int cmd)
{
	static const unsigned long values[] = {
		0, 1, 1000, 0x7fffffffUL, 0x80000000UL, 0xffffffffUL,
		0x100000000UL, ~0UL, 0x1000,
	};
	uint32_t minimum;

	if (cmd == VMGENID_FORCE_GEN_UPDATE_MIN && below(4)) {
		/* Mostly near the counter, so it does not saturate at once. */
		minimum = below(50) ? counter_seen + below(8) : (uint32_t)rnd();
		memcpy(ioctl_buf, &minimum, 4);
		return (unsigned long)ioctl_buf;
	}
	if (_IOC_DIR(cmd) != _IOC_NONE && below(2)) {
		memset(ioctl_buf, (int)rnd(), 64);
		return (unsigned long)ioctl_buf;
	}
	return below(3) ? values[below(9)] : rnd();
}

static void op_ioctl(void)
{
	int fd = pick_fd(), ret;
	unsigned int cmd = random_cmd();
	unsigned long arg = random_arg(cmd);

	if (fd < 0)
		return;
	alarm_soon();		/* WAIT_WATCHERS may wait for long */
	ret = ioctl(fd, cmd, arg);
	check_errno("ioctl", ret, errno, ioctl_errnos);
	if (cmd == VMGENID_GET_OUTDATED_WATCHERS && ret < 0)
		bad("GET_OUTDATED_WATCHERS", ret, errno);
}

static void op_poll(void)
{
	struct pollfd pfd = { .fd = pick_fd(), .events = POLLIN };
	int ret;

	if (pfd.fd < 0)
		return;
	alarm_soon();
	ret = poll(&pfd, 1, below(2) ? 0 : below(30));
	check_errno("poll", ret, errno, poll_errnos);
	if (ret > 0 && (pfd.revents & (POLLERR | POLLHUP | POLLNVAL)))
		bad("poll revents", pfd.revents, 0);
}

static void op_nonblock(void)
{
	int fd = pick_fd(), flags;

	if (fd < 0)
		return;
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags ^ O_NONBLOCK))
		bad("fcntl", -1, errno);
}

/* After a batch: the daemon lives, its node opens, the page did not fall. */
static void check_alive(const char *dev, pid_t daemon,
			const volatile uint32_t *page)
{
	struct stat st;
	int fd;

	/* EPERM: alive, and not ours to signal (nobody and a root daemon). */
	if (kill(daemon, 0) && errno != EPERM)
		bad("daemon gone", -1, errno);
	if (stat(dev, &st) || !S_ISCHR(st.st_mode))
		bad("node gone", -1, errno);
	/* A cap-free open (EDQUOT is the cap): it reached the daemon. */
	fd = open(dev, O_RDONLY | O_NONBLOCK);
	if (fd >= 0)
		close(fd);
	else
		check_errno("check open", fd, errno, open_errnos);
	if (page)
		saw_counter("page", *page);
}

static double seconds_since(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) +
	       (now.tv_nsec - start->tv_nsec) / 1e9;
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_alarm };	/* no SA_RESTART */
	const char *dev = "/dev/vmgenid";
	const volatile uint32_t *page = NULL;
	unsigned long long seed = 0, ops = 0, batches = 0;
	double seconds = 0;
	struct timespec start;
	pid_t daemon = 0;
	int opt, page_fd = -1, e, first = 1;
	void *map;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "s:t:P:d:f:")) != -1) {
		switch (opt) {
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 't':
			seconds = atof(optarg);
			break;
		case 'P':
			daemon = atoi(optarg);
			break;
		case 'd':
			dev = optarg;
			break;
		case 'f':
			page_fd = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || seconds <= 0 || daemon <= 0)
		usage();
	rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;	/* never 0 */
	sigaction(SIGALRM, &sa, NULL);
	if (page_fd >= 0) {
		map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, page_fd, 0);
		if (map == MAP_FAILED)
			bad("mmap page", -1, errno);
		page = map;
	}

	clock_gettime(CLOCK_MONOTONIC, &start);
	while (seconds_since(&start) < seconds) {
		for (int i = 0; i < BATCH; i++, ops++) {
			switch (below(16)) {
			case 0: case 1: case 2:
				op_open(dev);
				break;
			case 3:
				op_close();
				break;
			case 4: case 5: case 6:
				op_read();
				break;
			case 7: case 8:
				op_write();
				break;
			case 9: case 10: case 11: case 12:
				op_ioctl();
				break;
			case 13: case 14:
				op_poll();
				break;
			default:
				op_nonblock();
			}
		}
		batches++;
		check_alive(dev, daemon, page);
	}
	setitimer(ITIMER_REAL, &(struct itimerval){ 0 }, NULL);

	printf("fuzz seed=%llu ops=%llu batches=%llu counter=%u errnos=",
	       seed, ops, batches, counter_seen);
	for (e = 1; e < MAX_ERRNO; e++) {
		if (!errno_count[e])
			continue;
		printf("%s%s:%lu", first ? "" : ",", errname(e),
		       errno_count[e]);
		first = 0;
	}
	printf("%s\n", first ? "-" : "");
	return 0;
}
