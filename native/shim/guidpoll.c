// SPDX-License-Identifier: MIT
/*
 * The GUID poller: a thread that compares the hypervisor's GUID with its
 * last value every interval, and at once when the kernel logs something
 * (the kernel's driver logs "crng reseeded due to virtual machine fork" on
 * every change).
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
#include "publisher.h"

#define VMGENID_KMSG_RECORD_MAX 8192

struct vmgenid_guid_poll {
	pthread_t thread;
	const volatile unsigned char *guid;
	struct timespec interval;
	unsigned char last[VMGENID_GUID_SIZE];	/* the thread's own */
	int event_fd;
	int kmsg_fd;			/* /dev/kmsg, or -1: the timer only */
	int stop_fd;			/* readable: the thread returns */
	pthread_mutex_t lock;		/* held while publishing */
	struct vmgenid_publisher *pub;	/* NULL: wake the daemon only */
	unsigned int vmfork_lines;	/* since the daemon last asked */
};

static void guid_copy(unsigned char *dst, const volatile unsigned char *guid)
{
	int i;

	for (i = 0; i < VMGENID_GUID_SIZE; i++)
		dst[i] = guid[i];
}

/*
 * A /dev/kmsg record, "prio,seq,usec,flags;text\n" and dictionary lines:
 * the kernel's VM fork line?  Only facility 0 counts (userspace writes to
 * /dev/kmsg get LOG_USER whatever they ask, so they cannot fake one).
 */
static int kmsg_is_vmfork(char *record, ssize_t len)
{
	char *text, *end;

	record[len] = '\0';
	if (strtol(record, NULL, 10) >> 3 != 0)
		return 0;
	text = strchr(record, ';');
	if (!text)
		return 0;
	end = strchr(text, '\n');
	if (end)
		*end = '\0';
	return strstr(text, vmgenid_vmfork_marker) != NULL;
}

/*
 * Read every record there is: 1 if the VM fork line was among them, 0 if
 * not, -1 if /dev/kmsg failed (the thread then goes on with its timer).
 */
static int kmsg_drain(int fd)
{
	char record[VMGENID_KMSG_RECORD_MAX + 1];
	int vmfork = 0;

	for (;;) {
		ssize_t n = read(fd, record, VMGENID_KMSG_RECORD_MAX);

		if (n > 0) {
			vmfork |= kmsg_is_vmfork(record, n);
			continue;
		}
		if (n < 0 && errno == EAGAIN)
			return vmfork;
		/* Overwritten before we read them: on from the oldest left. */
		if (n < 0 && (errno == EPIPE || errno == EINTR))
			continue;
		return -1;
	}
}

static void guid_poll_wake(struct vmgenid_guid_poll *poll)
{
	uint64_t one = 1;

	(void)!write(poll->event_fd, &one, sizeof(one));
}

static void guid_changed(struct vmgenid_guid_poll *poll,
			 const unsigned char *now, int kernel_reseeded,
			 const struct timespec *woke)
{
	pthread_mutex_lock(&poll->lock);
	if (poll->pub)
		vmgenid_publisher_hardware(poll->pub, now, kernel_reseeded,
					   woke);
	pthread_mutex_unlock(&poll->lock);
	guid_poll_wake(poll);
}

/*
 * Until the interval passes, the kernel logs or vmgenid_guid_poll_stop()
 * asks us to end: 1 on the kernel's VM fork line, -1 to end.  The thread
 * returns rather than being cancelled: a cancellation unwinds its frames
 * without the epilogues that unpoison them under ASan, whose own thread
 * exit then reports them (the sanitized host suite, tools/run-tests).
 */
static int guid_poll_wait(struct vmgenid_guid_poll *poll)
{
	struct pollfd fds[] = {
		{ .fd = poll->stop_fd, .events = POLLIN },
		{ .fd = poll->kmsg_fd, .events = POLLIN },	/* -1: ignored */
	};
	int vmfork;

	if (ppoll(fds, 2, &poll->interval, NULL) <= 0)
		return 0;
	if (fds[0].revents)
		return -1;
	if (!fds[1].revents)
		return 0;
	vmfork = kmsg_drain(poll->kmsg_fd);
	if (vmfork < 0) {
		poll->kmsg_fd = -1;
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
		guid_copy(now, poll->guid);
		if (memcmp(now, poll->last, VMGENID_GUID_SIZE)) {
			memcpy(poll->last, now, VMGENID_GUID_SIZE);
			guid_changed(poll, now, vmfork, &woke);
		} else if (vmfork) {
			guid_poll_wake(poll);
		}
	}
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

struct vmgenid_guid_poll *vmgenid_guid_poll_start(const void *guid,
						   unsigned int interval_ms,
						   int event_fd, int kmsg_fd)
{
	struct vmgenid_guid_poll *poll;
	sigset_t all, old;
	int err;

	poll = calloc(1, sizeof(*poll));
	if (!poll)
		return NULL;
	poll->guid = guid;
	/* Taken now, not when the thread first runs: a change in between
	 * counts. */
	guid_copy(poll->last, poll->guid);
	poll->interval.tv_sec = interval_ms / 1000;
	poll->interval.tv_nsec = (long)(interval_ms % 1000) * 1000000L;
	poll->event_fd = event_fd;
	poll->kmsg_fd = kmsg_fd;
	poll->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (poll->stop_fd < 0) {
		free(poll);
		return NULL;
	}
	pthread_mutex_init(&poll->lock, NULL);
	/* Signals are the main thread's (Python runs its handlers there). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&poll->thread, NULL, guid_poll_run, poll);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		pthread_mutex_destroy(&poll->lock);
		close(poll->stop_fd);
		free(poll);
		errno = err;
		return NULL;
	}
	return poll;
}

/* Ends the thread, after the publication under way if any. */
void vmgenid_guid_poll_stop(struct vmgenid_guid_poll *poll)
{
	uint64_t one = 1;

	(void)!write(poll->stop_fd, &one, sizeof(one));
	pthread_join(poll->thread, NULL);
	close(poll->stop_fd);
	pthread_mutex_destroy(&poll->lock);
	free(poll);
}
