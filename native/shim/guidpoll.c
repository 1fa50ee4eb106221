// SPDX-License-Identifier: MIT
/*
 * The GUID poller: a thread that compares the hypervisor's GUID with its
 * last value each time it wakes: whenever the kernel logs something (the
 * kernel's driver logs "crng reseeded due to virtual machine fork" on
 * every change), and every interval where nothing tells of a change.
 *
 * Where the kernel tells (its vmgenid driver bound: the daemon decides,
 * sources.py), the thread has no timer at all: it sleeps in ppoll() on
 * /dev/kmsg and on its stop eventfd, with no timeout, and an idle daemon
 * never wakes.  No change is missed for it: the hypervisor writes the new
 * GUID before the guest runs again, the kernel logs after it read that
 * GUID, and any record at all makes /dev/kmsg readable, so the thread
 * wakes after the GUID changed and compares it.  Records overwritten
 * before the thread read them (EPIPE: the ring overran, under a flood of
 * records a user can cause) change nothing to that: the thread still
 * wakes, reads what is left and compares.  If /dev/kmsg fails, the thread takes up the
 * interval, compares at once (a change may have come meanwhile) and tells
 * the daemon, which logs it (vmgenid_guid_poll_kmsg_error()).
 *
 * The hypervisor writes the new GUID before the guest resumes; the kernel's
 * own notice (ACPI notify, then the crng line in its log) comes tens of ms
 * later under emulation.  A 16-byte compare in C costs next to nothing, so
 * it can run often; the thread never touches Python.
 *
 * On a change it hands the GUID to the publisher (publisher.c), which
 * compares it with the last one published, reseeds the RNG and publishes:
 * state file, page, replies to the blocked reads.  Then it adds 1 to an
 * eventfd, and the daemon takes the publication for its log, its pollers
 * and its hooks.
 *
 * The kernel's VM fork line wakes the daemon too, changed GUID or not: it
 * is the kernel log hint of docs/interface.rst, read here rather than in
 * Python so that the thread, not the interpreter, is the first to act on it.
 *
 * Without a GUID (the kernel-log tier) the same thread reads only the
 * kernel log: the kernel compared the GUIDs before it logged, so each of
 * its VM fork records is one change (kmsg.c), published by the thread the
 * moment it reads it, as a new GUID is.
 */
#define _GNU_SOURCE		/* ppoll */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/eventfd.h>

#include "guid.h"
#include "guidpoll.h"
#include "kmsg.h"
#include "publisher.h"

struct vmgenid_guid_poll {
	pthread_t thread;
	const void *guid;		/* live; NULL: the kernel's records */
	struct timespec interval;
	int kmsg_tells;			/* no timer while /dev/kmsg reads */
	unsigned char last[VMGENID_GUID_SIZE];	/* the thread's own */
	int event_fd;
	int kmsg_fd;			/* /dev/kmsg, or -1: the timer only */
	int kmsg_err;			/* why /dev/kmsg failed, or 0 */
	int stop_fd;			/* readable: the thread returns */
	pthread_mutex_t lock;		/* held while publishing */
	struct vmgenid_publisher *pub;	/* NULL: wake the daemon only */
	unsigned int vmfork_lines;	/* since the daemon last asked */
	struct vmgenid_kmsg_records records;	/* without a GUID */
};

/*
 * Read every record there is: 1 if the VM fork line was among them, 0 if
 * not, -1 if /dev/kmsg failed (the thread then goes on with its timer).
 * A gap in the records (EPIPE) needs nothing more: the caller compares
 * the GUID after every drain.
 */
static int kmsg_drain(int fd)
{
	char record[VMGENID_KMSG_RECORD_MAX];
	int vmfork = 0;
	int64_t seq;
	ssize_t n;

	while ((n = vmgenid_kmsg_read(fd, record)) > 0)
		vmfork |= vmgenid_kmsg_parse(record, n, &seq) > 0;
	return n < 0 ? -1 : vmfork;
}

static void guid_poll_wake(struct vmgenid_guid_poll *poll)
{
	uint64_t one = 1;

	(void)!write(poll->event_fd, &one, sizeof(one));
}

/*
 * The publisher reads the GUID again, under its lock, from the page
 * itself: whatever it then publishes is the newest.
 */
static void guid_changed(struct vmgenid_guid_poll *poll, int kernel_reseeded,
			 const struct timespec *woke)
{
	pthread_mutex_lock(&poll->lock);
	if (poll->pub)
		vmgenid_publisher_hardware(poll->pub, poll->guid,
					   kernel_reseeded, woke);
	pthread_mutex_unlock(&poll->lock);
	guid_poll_wake(poll);
}

/*
 * /dev/kmsg failed (errno): from now on the timer, and the daemon is told
 * (it logs that the thread polls now).
 */
static void kmsg_failed(struct vmgenid_guid_poll *poll)
{
	int err = errno;

	poll->kmsg_fd = -1;
	pthread_mutex_lock(&poll->lock);
	poll->kmsg_err = err;
	pthread_mutex_unlock(&poll->lock);
	guid_poll_wake(poll);
}

/*
 * Until the interval passes (none while the kernel log tells), the kernel
 * logs or vmgenid_guid_poll_stop() asks us to end: 1 on the kernel's VM
 * fork line, -1 to end.  The thread returns rather than being cancelled:
 * a cancellation unwinds its frames without the epilogues that unpoison
 * them under ASan, whose own thread exit then reports them (the sanitized
 * host suite, tools/run-tests).
 */
static int guid_poll_wait(struct vmgenid_guid_poll *poll)
{
	struct pollfd fds[] = {
		{ .fd = poll->stop_fd, .events = POLLIN },
		{ .fd = poll->kmsg_fd, .events = POLLIN },	/* -1: ignored */
	};
	const struct timespec *timeout = &poll->interval;
	int vmfork;

	if (poll->kmsg_tells && poll->kmsg_fd >= 0)
		timeout = NULL;
	if (ppoll(fds, 2, timeout, NULL) <= 0)
		return 0;
	if (fds[0].revents)
		return -1;
	if (!fds[1].revents)
		return 0;
	vmfork = kmsg_drain(poll->kmsg_fd);
	if (vmfork < 0) {
		kmsg_failed(poll);
		return 0;
	}
	return vmfork;
}

static void *guid_poll_run(void *arg)
{
	struct vmgenid_guid_poll *poll = arg;
	unsigned char now[VMGENID_GUID_SIZE];
	struct timespec woke;
	int vmfork;

	for (;;) {
		vmfork = guid_poll_wait(poll);
		if (vmfork < 0)
			return NULL;
		clock_gettime(CLOCK_MONOTONIC, &woke);
		if (vmfork)
			__atomic_add_fetch(&poll->vmfork_lines, 1,
					   __ATOMIC_RELEASE);
		vmgenid_guid_load(now, poll->guid);
		if (memcmp(now, poll->last, VMGENID_GUID_SIZE)) {
			memcpy(poll->last, now, VMGENID_GUID_SIZE);
			guid_changed(poll, vmfork, &woke);
		} else if (vmfork) {
			guid_poll_wake(poll);
		}
	}
	return NULL;
}

/*
 * Without a GUID (the kernel-log tier): apply the tier's record rule
 * (kmsg.c) to every record there is, and publish each change at once,
 * then wake the daemon.  With the lock held, so that the record applied
 * and its bump are one step for vmgenid_guid_poll_kmsg_seq().  0 if
 * /dev/kmsg failed.
 */
static int kmsg_apply(struct vmgenid_guid_poll *poll,
		      const struct timespec *woke)
{
	char record[VMGENID_KMSG_RECORD_MAX];
	ssize_t n;
	int change;

	while ((n = vmgenid_kmsg_read(poll->kmsg_fd, record)) > 0) {
		change = vmgenid_kmsg_feed(&poll->records, record, n);
		if (change == VMGENID_KMSG_NONE)
			continue;
		vmgenid_publisher_record(poll->pub, poll->records.applied,
					 change == VMGENID_KMSG_LOST, woke);
		guid_poll_wake(poll);
	}
	if (n == 0)
		return 1;
	poll->kmsg_err = errno;
	guid_poll_wake(poll);
	return 0;
}

/*
 * The kernel-log tier's thread: it waits on /dev/kmsg only (no interval:
 * nothing to compare) and ends when no publisher takes its records (they
 * stay unread, for the state file's restart rule), /dev/kmsg fails or
 * vmgenid_guid_poll_stop() asks: a record read is always applied.
 */
static void *kmsg_poll_run(void *arg)
{
	struct vmgenid_guid_poll *poll = arg;
	struct pollfd fds[] = {
		{ .fd = poll->stop_fd, .events = POLLIN },
		{ .fd = poll->kmsg_fd, .events = POLLIN },
	};
	struct timespec woke;
	int going = 1;

	while (going) {
		if (ppoll(fds, 2, NULL, NULL) > 0 && fds[0].revents)
			return NULL;
		clock_gettime(CLOCK_MONOTONIC, &woke);
		pthread_mutex_lock(&poll->lock);
		going = poll->pub && kmsg_apply(poll, &woke);
		pthread_mutex_unlock(&poll->lock);
	}
	return NULL;
}

/* From now on a change is published by @pub (NULL: no longer; no
 * publication is under way when this returns). */
void vmgenid_guid_poll_publish_to(struct vmgenid_guid_poll *poll,
				  struct vmgenid_publisher *pub)
{
	pthread_mutex_lock(&poll->lock);
	poll->pub = pub;
	pthread_mutex_unlock(&poll->lock);
}

/* How many VM fork lines the kernel logged since the last call. */
unsigned int vmgenid_guid_poll_take_vmfork(struct vmgenid_guid_poll *poll)
{
	return __atomic_exchange_n(&poll->vmfork_lines, 0, __ATOMIC_ACQUIRE);
}

static struct vmgenid_guid_poll *poll_start(struct vmgenid_guid_poll *poll,
					     void *(*run)(void *),
					     const char *name)
{
	sigset_t all, old;
	int err;

	poll->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (poll->stop_fd < 0) {
		free(poll);
		return NULL;
	}
	pthread_mutex_init(&poll->lock, NULL);
	/* Signals are the main thread's (Python runs its handlers there). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&poll->thread, NULL, run, poll);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!err)	/* its name in /proc/PID/task/TID/comm, top -H */
		pthread_setname_np(poll->thread, name);
	if (err) {
		pthread_mutex_destroy(&poll->lock);
		close(poll->stop_fd);
		free(poll);
		errno = err;
		return NULL;
	}
	return poll;
}

/*
 * The GUID tier's thread: the GUID at @guid compared every @interval_ms,
 * and whenever @kmsg_fd (/dev/kmsg, or -1) has records; with @kmsg_tells
 * (the kernel logs every change) only then, while @kmsg_fd reads.
 */
struct vmgenid_guid_poll *vmgenid_guid_poll_start(const void *guid,
						   unsigned int interval_ms,
						   int event_fd, int kmsg_fd,
						   int kmsg_tells)
{
	struct vmgenid_guid_poll *poll;

	poll = calloc(1, sizeof(*poll));
	if (!poll)
		return NULL;
	poll->guid = guid;
	/* Taken now, not when the thread first runs: a change in between
	 * counts. */
	vmgenid_guid_load(poll->last, poll->guid);
	poll->interval.tv_sec = interval_ms / 1000;
	poll->interval.tv_nsec = (long)(interval_ms % 1000) * 1000000L;
	poll->event_fd = event_fd;
	poll->kmsg_fd = kmsg_fd;
	poll->kmsg_tells = kmsg_tells;
	return poll_start(poll, guid_poll_run, "vmgenid-guid");
}

/*
 * The kernel-log tier's thread: the kernel's records in @kmsg_fd (read
 * up to @applied, the last record accounted for, or -1) published by
 * @pub, each change from its start (vmgenid_guid_poll_publish_to(NULL)
 * ends it).
 */
struct vmgenid_guid_poll *vmgenid_kmsg_poll_start(struct vmgenid_publisher *pub,
						  int64_t applied,
						  int event_fd, int kmsg_fd)
{
	struct vmgenid_guid_poll *poll;

	poll = calloc(1, sizeof(*poll));
	if (!poll)
		return NULL;
	poll->pub = pub;
	poll->records.applied = applied;
	poll->event_fd = event_fd;
	poll->kmsg_fd = kmsg_fd;
	return poll_start(poll, kmsg_poll_run, "vmgenid-kmsg");
}

/* The last kernel record accounted for (the state file's kmsg_seq). */
int64_t vmgenid_guid_poll_kmsg_seq(struct vmgenid_guid_poll *poll)
{
	int64_t applied;

	pthread_mutex_lock(&poll->lock);
	applied = poll->records.applied;
	pthread_mutex_unlock(&poll->lock);
	return applied;
}

/* Why the kernel log could not be read (an errno), or 0: then the
 * kernel-log tier's thread ended, the GUID tier's polls. */
int vmgenid_guid_poll_kmsg_error(struct vmgenid_guid_poll *poll)
{
	int err;

	pthread_mutex_lock(&poll->lock);
	err = poll->kmsg_err;
	pthread_mutex_unlock(&poll->lock);
	return err;
}

void vmgenid_guid_poll_stop(struct vmgenid_guid_poll *poll)
{
	uint64_t one = 1;

	(void)!write(poll->stop_fd, &one, sizeof(one));
	pthread_join(poll->thread, NULL);
	close(poll->stop_fd);
	pthread_mutex_destroy(&poll->lock);
	free(poll);
}
