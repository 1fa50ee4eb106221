/*
 * The GUID poller: a thread that compares the hypervisor's GUID with its
 * last value every interval and adds 1 to an eventfd when it differs.
 *
 * The hypervisor writes the new GUID before the guest resumes; the kernel's
 * own notice (ACPI notify, then the crng line in its log) comes tens of ms
 * later under emulation.  A 16-byte compare in C costs next to nothing, so
 * it can run often; the thread never touches Python, and the daemon reads
 * the GUID again itself before deciding anything.
 */
#define VMGENID_GUID_SIZE 16

struct vmgenid_guid_poll {
	pthread_t thread;
	const volatile unsigned char *guid;
	struct timespec interval;
	int event_fd;
};

static void guid_copy(unsigned char *dst, const volatile unsigned char *guid)
{
	int i;

	for (i = 0; i < VMGENID_GUID_SIZE; i++)
		dst[i] = guid[i];
}

static void *guid_poll_run(void *arg)
{
	struct vmgenid_guid_poll *poll = arg;
	unsigned char last[VMGENID_GUID_SIZE], now[VMGENID_GUID_SIZE];
	uint64_t one = 1;

	guid_copy(last, poll->guid);
	for (;;) {
		/* A cancellation point: vmgenid_guid_poll_stop() ends us here. */
		clock_nanosleep(CLOCK_MONOTONIC, 0, &poll->interval, NULL);
		guid_copy(now, poll->guid);
		if (memcmp(now, last, VMGENID_GUID_SIZE)) {
			memcpy(last, now, VMGENID_GUID_SIZE);
			/* Fails only when full, and then it is readable. */
			(void)!write(poll->event_fd, &one, sizeof(one));
		}
	}
	return NULL;
}

struct vmgenid_guid_poll *vmgenid_guid_poll_start(const void *guid,
						   unsigned int interval_ms,
						   int event_fd)
{
	struct vmgenid_guid_poll *poll;
	sigset_t all, old;
	int err;

	poll = calloc(1, sizeof(*poll));
	if (!poll)
		return NULL;
	poll->guid = guid;
	poll->interval.tv_sec = interval_ms / 1000;
	poll->interval.tv_nsec = (long)(interval_ms % 1000) * 1000000L;
	poll->event_fd = event_fd;
	/* Signals are the main thread's (Python runs its handlers there). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&poll->thread, NULL, guid_poll_run, poll);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		free(poll);
		errno = err;
		return NULL;
	}
	return poll;
}

void vmgenid_guid_poll_stop(struct vmgenid_guid_poll *poll)
{
	pthread_cancel(poll->thread);
	pthread_join(poll->thread, NULL);
	free(poll);
}
