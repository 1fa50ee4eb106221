/*
 * The GUID poller: a thread that compares the hypervisor's GUID with its
 * last value every interval and adds 1 to an eventfd when it differs.
 *
 * The hypervisor writes the new GUID before the guest resumes; the kernel's
 * own notice (ACPI notify, then the crng line in its log) comes tens of ms
 * later under emulation.  A 16-byte compare in C costs next to nothing, so
 * it can run often; the thread never touches Python, and the daemon reads
 * the GUID again itself before deciding anything.
 *
 * Once the daemon is woken, the thread also mixes the new GUID into the
 * kernel RNG and reseeds it (the seed's add_device_randomness), in
 * parallel with the daemon's own work.  The daemon must not wake anyone
 * before that is done: vmgenid_guid_poll_reseeded() waits for it, and says
 * whether it was done for the GUID the daemon read.
 */
#define VMGENID_GUID_SIZE 16

struct vmgenid_guid_poll {
	pthread_t thread;
	const volatile unsigned char *guid;
	struct timespec interval;
	unsigned char last[VMGENID_GUID_SIZE];	/* the thread's own */
	int event_fd;
	int rng_fd;			/* /dev/urandom, or -1 */
	pthread_mutex_t lock;		/* held while reseeding */
	unsigned char reseeded[VMGENID_GUID_SIZE];
	int has_reseeded;
};

static void guid_copy(unsigned char *dst, const volatile unsigned char *guid)
{
	int i;

	for (i = 0; i < VMGENID_GUID_SIZE; i++)
		dst[i] = guid[i];
}

static int guid_reseed_rng(int rng_fd, const unsigned char *guid)
{
	if (write(rng_fd, guid, VMGENID_GUID_SIZE) != VMGENID_GUID_SIZE)
		return -1;
	/* A write only feeds the input pool; the crng draws from it later. */
	return ioctl(rng_fd, RNDRESEEDCRNG);
}

static void guid_changed(struct vmgenid_guid_poll *poll,
			 const unsigned char *now)
{
	uint64_t one = 1;
	int state;

	/* Not ended halfway with the lock held. */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &state);
	pthread_mutex_lock(&poll->lock);
	/* The daemon first: it reads the GUID while we reseed. */
	(void)!write(poll->event_fd, &one, sizeof(one));
	if (poll->rng_fd >= 0 && guid_reseed_rng(poll->rng_fd, now) == 0) {
		memcpy(poll->reseeded, now, VMGENID_GUID_SIZE);
		poll->has_reseeded = 1;
	}
	pthread_mutex_unlock(&poll->lock);
	pthread_setcancelstate(state, NULL);
}

static void *guid_poll_run(void *arg)
{
	struct vmgenid_guid_poll *poll = arg;
	unsigned char now[VMGENID_GUID_SIZE];

	for (;;) {
		/* A cancellation point: vmgenid_guid_poll_stop() ends us here. */
		clock_nanosleep(CLOCK_MONOTONIC, 0, &poll->interval, NULL);
		guid_copy(now, poll->guid);
		if (memcmp(now, poll->last, VMGENID_GUID_SIZE)) {
			memcpy(poll->last, now, VMGENID_GUID_SIZE);
			guid_changed(poll, now);
		}
	}
	return NULL;
}

int vmgenid_guid_poll_reseeded(struct vmgenid_guid_poll *poll,
			       const void *guid)
{
	int done;

	pthread_mutex_lock(&poll->lock);
	done = poll->has_reseeded &&
	       !memcmp(poll->reseeded, guid, VMGENID_GUID_SIZE);
	pthread_mutex_unlock(&poll->lock);
	return done;
}

struct vmgenid_guid_poll *vmgenid_guid_poll_start(const void *guid,
						   unsigned int interval_ms,
						   int event_fd, int rng_fd)
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
	poll->rng_fd = rng_fd;
	pthread_mutex_init(&poll->lock, NULL);
	/* Signals are the main thread's (Python runs its handlers there). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&poll->thread, NULL, guid_poll_run, poll);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		pthread_mutex_destroy(&poll->lock);
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
	pthread_mutex_destroy(&poll->lock);
	free(poll);
}
