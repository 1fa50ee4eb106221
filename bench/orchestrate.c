// SPDX-License-Identifier: GPL-2.0+
/*
 * orchestrate [-d DEV] [-r] [-k ROUNDS] N
 *
 * Orchestration latency: N child processes blocked in read(); the time
 * from just before the trigger until the orchestrator knows every child
 * has handled it.
 *
 *	default	each child reads DEV and acknowledges (write) what it read;
 *		the orchestrator bumps (VMGENID_FORCE_GEN_UPDATE, root),
 *		acknowledges its own watcher (VMGENID_WAIT_WATCHERS fails
 *		with EINTR while the caller is outdated) and waits in
 *		VMGENID_WAIT_WATCHERS until no watcher is outdated.
 *		DEV: /dev/vmgenid, or /dev/vmgenid-ref (see fanout.c)
 *	-r	the reference: each child reads one eventfd (EFD_SEMAPHORE)
 *		and writes one byte to a pipe; the orchestrator writes N to
 *		the eventfd and reads N bytes from the pipe.  Then, untimed,
 *		it releases the children (a second eventfd), so that none
 *		takes two wake-ups of one round
 *
 * Before each trigger every child sleeps in read() on its descriptor, and
 * for DEV a GET_OUTDATED_WATCHERS round trip shows the daemon took every
 * read request and nobody is outdated (see fanout.c).
 *
 * Output, one line:
 *	orchestrate mode=device|pipe dev=DEV|- n=N rounds=R done_us=MEDIAN
 *		    all_done_us=A,B,...
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>

#include <linux/vmgenid.h>

#include "bench_util.h"

#define WAIT_TIMEOUT_MS	300000

static void child(volatile int *fd_slot, const char *dev, int trigger_efd,
		  int release_efd, int done_pipe, int rounds)
{
	uint32_t gen;
	uint64_t v;
	int fd, r;

	fd = dev ? open_device(dev) : trigger_efd;
	*fd_slot = fd;
	for (r = 0; r < rounds; r++) {
		if (!dev) {
			if (read(fd, &v, sizeof(v)) != sizeof(v))
				die("read eventfd");
			if (write(done_pipe, "", 1) != 1)
				die("write pipe");
			if (read(release_efd, &v, sizeof(v)) != sizeof(v))
				die("read eventfd");
			continue;
		}
		if (read(fd, &gen, sizeof(gen)) != sizeof(gen))
			die("read device");
		if (write(fd, &gen, sizeof(gen)) != sizeof(gen))
			die("ack");
	}
	_exit(0);
}

/* Bump, acknowledge our own watcher, wait for everyone else. */
static void orchestrate_device(int ctl)
{
	uint32_t gen;

	if (ioctl(ctl, VMGENID_FORCE_GEN_UPDATE) < 0)
		die("VMGENID_FORCE_GEN_UPDATE");
	if (read(ctl, &gen, sizeof(gen)) != sizeof(gen) ||
	    write(ctl, &gen, sizeof(gen)) != sizeof(gen))
		die("orchestrator ack");
	if (ioctl(ctl, VMGENID_WAIT_WATCHERS, WAIT_TIMEOUT_MS) < 0)
		die("VMGENID_WAIT_WATCHERS");
}

static void orchestrate_pipe(int trigger_efd, int done_pipe, int n)
{
	uint64_t v = n;
	char buf[4096];
	ssize_t got;

	if (write(trigger_efd, &v, sizeof(v)) != sizeof(v))
		die("write eventfd");
	while (n > 0) {
		got = read(done_pipe, buf, sizeof(buf));
		if (got <= 0)
			die("read pipe");
		n -= got;
	}
}

int main(int argc, char **argv)
{
	struct waiters_opts o;
	int rounds, n, i, r, ctl;
	int trigger_efd, release_efd, pipefd[2];
	volatile int *fds;
	double *done, t0;
	pid_t *pids;

	parse_waiters_opts(argc, argv, &o);
	rounds = o.rounds;
	n = o.n;

	fds = mmap(NULL, n * sizeof(*fds), PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (fds == MAP_FAILED)
		die("mmap");
	for (i = 0; i < n; i++)
		fds[i] = -1;
	pids = calloc(n, sizeof(*pids));
	done = calloc(rounds, sizeof(*done));
	if (!pids || !done)
		die("calloc");

	trigger_efd = semaphore_eventfd();
	release_efd = semaphore_eventfd();
	if (pipe2(pipefd, O_CLOEXEC))
		die("pipe2");
	ctl = o.reference ? -1 : open_device(o.dev);

	for (i = 0; i < n; i++) {
		pids[i] = fork_or_die();
		if (!pids[i])
			child(&fds[i], o.reference ? NULL : o.dev, trigger_efd,
			      release_efd, pipefd[1], rounds);
	}

	for (r = 0; r < rounds; r++) {
		waiters_ready(pids, fds, n, ctl);
		t0 = now_us();
		if (o.reference)
			orchestrate_pipe(trigger_efd, pipefd[0], n);
		else
			orchestrate_device(ctl);
		done[r] = now_us() - t0;
		if (o.reference) {
			uint64_t v = n;

			if (write(release_efd, &v, sizeof(v)) != sizeof(v))
				die("write eventfd");
		}
	}

	reap_children(pids, n);

	printf("orchestrate mode=%s dev=%s n=%d rounds=%d all_done_us=",
	       o.reference ? "pipe" : "device", o.reference ? "-" : o.dev, n,
	       rounds);
	for (r = 0; r < rounds; r++)
		printf("%s%.1f", r ? "," : "", done[r]);
	printf(" done_us=%.1f\n", median(done, rounds));
	return 0;
}
