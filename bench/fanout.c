// SPDX-License-Identifier: GPL-2.0+
/*
 * fanout [-d DEV] [-r] [-k ROUNDS] N
 *
 * Fan-out latency: N child processes blocked in read(), one trigger, the
 * time from just before the trigger to the last child's wake-up.
 *
 *	default	each child reads DEV (its own watcher); the trigger is
 *		VMGENID_FORCE_GEN_UPDATE on the parent's descriptor (root).
 *		DEV: /dev/vmgenid, or /dev/vmgenid-ref to see what CUSE
 *		itself costs (vmgenid_ref_server.c)
 *	-r	the reference: each child reads one eventfd (EFD_SEMAPHORE,
 *		whose readers all wake on a write); the trigger writes N
 *
 * Before each trigger every child must sleep in read() on its descriptor
 * (/proc/PID/stat and /proc/PID/syscall); for DEV, a GET_OUTDATED_WATCHERS
 * round trip then makes sure the daemon has taken every read request (it
 * answers one request at a time, in order) and that no watcher is
 * outdated.  Children stamp CLOCK_MONOTONIC into a shared array when
 * read() returns, then wait on a release eventfd before they acknowledge
 * (so acks do not compete with the fan-out being measured) and block again.
 *
 * Output, one line:
 *	fanout mode=device|eventfd dev=DEV|- n=N rounds=R last_us=MEDIAN
 *	       first_us=MEDIAN p50_us=MEDIAN all_last_us=A,B,...
 * (medians over the rounds of: the last wake-up, the first, and each
 * round's median wake-up, in microseconds after the trigger.)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>

#include <linux/vmgenid.h>

#include "bench_util.h"

#define WAKE_TIMEOUT_S	300

/* One MAP_SHARED region, mapped before the fork. */
struct shared {
	atomic_int woken;
	volatile int *fd;		/* the fd each child blocks on */
	volatile double *wake_us;	/* when its read() returned */
};

static void efd_read(int efd)
{
	uint64_t v;

	if (read(efd, &v, sizeof(v)) != sizeof(v))
		die("read eventfd");
}

static void efd_write(int efd, uint64_t v)
{
	if (write(efd, &v, sizeof(v)) != sizeof(v))
		die("write eventfd");
}

static void child(struct shared *sh, int i, const char *dev, int trigger_efd,
		  int release_efd, int rounds)
{
	uint32_t gen;
	int fd, r;

	fd = dev ? open_device(dev) : trigger_efd;
	sh->fd[i] = fd;
	for (r = 0; r < rounds; r++) {
		if (dev) {
			if (read(fd, &gen, sizeof(gen)) != sizeof(gen))
				die("read device");
		} else {
			efd_read(fd);
		}
		sh->wake_us[i] = now_us();
		atomic_fetch_add(&sh->woken, 1);
		efd_read(release_efd);
		if (dev && write(fd, &gen, sizeof(gen)) != sizeof(gen))
			die("ack");
	}
	_exit(0);
}

static void ack_own(int ctl)
{
	uint32_t gen;

	if (read(ctl, &gen, sizeof(gen)) != sizeof(gen) ||
	    write(ctl, &gen, sizeof(gen)) != sizeof(gen))
		die("parent ack");
}

int main(int argc, char **argv)
{
	struct waiters_opts o;
	int rounds, n, i, r, ctl;
	int trigger_efd, release_efd;
	double *last, *first, *p50, *wake, t0;
	struct shared *sh;
	size_t sh_size;
	pid_t *pids;

	parse_waiters_opts(argc, argv, &o);
	rounds = o.rounds;
	n = o.n;

	sh_size = sizeof(*sh) + n * (sizeof(double) + sizeof(int));
	sh = mmap(NULL, sh_size, PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		die("mmap");
	sh->wake_us = (volatile double *)(sh + 1);
	sh->fd = (volatile int *)(sh->wake_us + n);
	for (i = 0; i < n; i++)
		sh->fd[i] = -1;
	pids = calloc(n, sizeof(*pids));
	wake = calloc(n, sizeof(*wake));
	last = calloc(rounds, sizeof(*last));
	first = calloc(rounds, sizeof(*first));
	p50 = calloc(rounds, sizeof(*p50));
	if (!pids || !wake || !last || !first || !p50)
		die("calloc");

	trigger_efd = semaphore_eventfd();
	release_efd = semaphore_eventfd();
	ctl = o.reference ? -1 : open_device(o.dev);

	for (i = 0; i < n; i++) {
		pids[i] = fork_or_die();
		if (!pids[i])
			child(sh, i, o.reference ? NULL : o.dev, trigger_efd,
			      release_efd, rounds);
	}

	for (r = 0; r < rounds; r++) {
		double deadline;

		waiters_ready(pids, sh->fd, n, ctl);
		atomic_store(&sh->woken, 0);

		t0 = now_us();
		if (o.reference)
			efd_write(trigger_efd, n);
		else if (ioctl(ctl, VMGENID_FORCE_GEN_UPDATE) < 0)
			die("VMGENID_FORCE_GEN_UPDATE");

		deadline = t0 + WAKE_TIMEOUT_S * 1e6;
		while (atomic_load(&sh->woken) < n) {
			if (now_us() > deadline) {
				fprintf(stderr, "only %d of %d woke\n",
					atomic_load(&sh->woken), n);
				exit(1);
			}
			usleep(1000);
		}
		for (i = 0; i < n; i++)
			wake[i] = sh->wake_us[i] - t0;
		p50[r] = median(wake, n);	/* sorts wake[] */
		first[r] = wake[0];
		last[r] = wake[n - 1];

		if (!o.reference)
			ack_own(ctl);
		efd_write(release_efd, n);
	}

	reap_children(pids, n);

	printf("fanout mode=%s dev=%s n=%d rounds=%d",
	       o.reference ? "eventfd" : "device", o.reference ? "-" : o.dev,
	       n, rounds);
	printf(" all_last_us=");
	for (r = 0; r < rounds; r++)
		printf("%s%.1f", r ? "," : "", last[r]);
	printf(" last_us=%.1f first_us=%.1f p50_us=%.1f\n",
	       median(last, rounds), median(first, rounds),
	       median(p50, rounds));
	return 0;
}
