// SPDX-License-Identifier: MIT
/*
 * The armed bump: the next hardware generation, made ready by the daemon,
 * that the GUID poll thread publishes the moment it sees a new GUID.
 *
 * Right after a restore under emulation every code path run for the first
 * time costs milliseconds: the daemon's Python path from its wake-up to the
 * replies took about 100 ms, against the kernel's own 80 ms reaction.  So
 * the work that must come before the wake-ups is made ready in advance and
 * done in C.  The state machine stays the only truth:
 *
 *  - the daemon arms the bump with the counter its next bump gives (its
 *    counter + 1) and the GUID it knows, and registers each read that
 *    waits (vmgenid_armed_read_add);
 *  - the thread, on a GUID other than the armed one, does the order of
 *    docs/interface.rst, "The page", for exactly that bump: the state
 *    file, the page (and the VMClock-ABI page, if the daemon keeps one),
 *    then the replies to
 *    the registered reads; and it disarms;
 *  - the daemon takes the fired bump (vmgenid_armed_bump_take, which also
 *    disarms: no bump of its own can overlap one of the thread's) before it
 *    handles any request, applies the same bump to its state machine, and
 *    arms again.
 *
 * Who answers a registered read is decided under the lock: the thread when
 * it fires, or the daemon when vmgenid_armed_read_take() says so; never
 * both.  Pollers and WAIT_WATCHERS callers are the daemon's to wake.
 */

struct vmgenid_armed_read {
	struct vmgenid_armed_read *prev, *next;
	fuse_req_t req;
	int answered;			/* by a fired bump */
};

struct vmgenid_armed_bump {
	pthread_mutex_t lock;
	struct vmgenid_state_file *state;
	struct vmgenid_page *page;
	struct vmgenid_page *vmclock;	/* the VMClock-ABI page, or NULL */
	vmgenid_reply_buf_fn reply;	/* fuse_reply_buf, or a test's */
	int armed;
	uint32_t counter;		/* what firing publishes */
	unsigned char guid[VMGENID_GUID_SIZE];	/* the daemon's GUID */
	struct vmgenid_armed_read reads;	/* list head */
	int fired;			/* read without the lock */
	struct vmgenid_fired_bump last;
};

struct vmgenid_armed_bump *
vmgenid_armed_bump_new(struct vmgenid_state_file *state,
		       struct vmgenid_page *page, struct vmgenid_page *vmclock,
		       vmgenid_reply_buf_fn reply)
{
	struct vmgenid_armed_bump *ab = calloc(1, sizeof(*ab));

	if (!ab)
		return NULL;
	pthread_mutex_init(&ab->lock, NULL);
	ab->state = state;
	ab->page = page;
	ab->vmclock = vmclock;
	ab->reply = reply;
	ab->reads.prev = &ab->reads;
	ab->reads.next = &ab->reads;
	return ab;
}

void vmgenid_armed_bump_arm(struct vmgenid_armed_bump *ab, uint32_t counter,
			    const void *guid)
{
	pthread_mutex_lock(&ab->lock);
	ab->counter = counter;
	memcpy(ab->guid, guid, VMGENID_GUID_SIZE);
	ab->armed = 1;
	pthread_mutex_unlock(&ab->lock);
}

/*
 * Whether it fired since the last take: the flag itself, for the daemon
 * to load before every request without a call.  An aligned int, stored
 * (release) before the value is published; a request sent after its
 * sender saw the value is read from /dev/cuse after that, and the system
 * calls in between order the two.
 */
const int *vmgenid_armed_bump_fired_flag(struct vmgenid_armed_bump *ab)
{
	return &ab->fired;
}

/* Disarm; 1 and the fired bump in @out if it fired since the last take. */
int vmgenid_armed_bump_take(struct vmgenid_armed_bump *ab,
			    struct vmgenid_fired_bump *out)
{
	int fired;

	pthread_mutex_lock(&ab->lock);
	ab->armed = 0;
	fired = ab->fired;
	if (fired) {
		*out = ab->last;
		__atomic_store_n(&ab->fired, 0, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&ab->lock);
	return fired;
}

static unsigned int armed_us_since(const struct timespec *then)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - then->tv_sec) * 1000000 +
	       (now.tv_nsec - then->tv_nsec) / 1000;
}

static void armed_read_unlink(struct vmgenid_armed_read *read)
{
	read->prev->next = read->next;
	read->next->prev = read->prev;
	read->prev = read->next = read;
}

/*
 * The GUID poll thread, woken at @woke, saw @guid (@kernel_log: on the
 * kernel's VM fork line).  Fire if armed for another GUID; 1 if it fired.
 * The commit's failure does not stop it: as in the daemon, a missed
 * wake-up is worse than a stale file (the daemon reports it and tries
 * again).
 */
int vmgenid_armed_bump_fire(struct vmgenid_armed_bump *ab, const void *guid,
			    int kernel_log, const struct timespec *woke)
{
	struct vmgenid_armed_read *read;
	char text[37];
	uint32_t value;
	int ret;

	pthread_mutex_lock(&ab->lock);
	if (!ab->armed || !memcmp(ab->guid, guid, VMGENID_GUID_SIZE)) {
		pthread_mutex_unlock(&ab->lock);
		return 0;
	}
	ab->armed = 0;
	ab->last.fire_us = armed_us_since(woke);
	value = ab->counter;
	vmgenid_guid_format(guid, text);
	/* The GUID tier: no kernel log position to keep (-1). */
	ret = vmgenid_state_save(ab->state, value, text, -1);
	ab->last.state_err = ret < 0 ? ret : 0;
	ab->last.committed_us = armed_us_since(woke);
	ab->last.counter = value;
	memcpy(ab->last.guid, guid, VMGENID_GUID_SIZE);
	ab->last.kernel_log = kernel_log;
	/*
	 * Before anyone can see the value: a request sent after seeing it
	 * (an ack of it) must find the daemon reconciling first.  The
	 * daemon's take waits on the lock until the replies are done.
	 */
	__atomic_store_n(&ab->fired, 1, __ATOMIC_RELEASE);
	ab->last.page_result = vmgenid_page_store(ab->page, value);
	if (ab->vmclock)
		vmgenid_page_write(ab->vmclock, vmgenid_vmclock_store, value,
				   NULL);
	ab->last.replies = 0;
	while (ab->reads.next != &ab->reads) {
		read = ab->reads.next;
		armed_read_unlink(read);
		read->answered = 1;
		ab->reply(read->req, (const char *)&value, sizeof(value));
		ab->last.replies++;
	}
	ab->last.replied_us = armed_us_since(woke);
	pthread_mutex_unlock(&ab->lock);
	return 1;
}

/* A read now waits for the next generation; NULL if out of memory. */
struct vmgenid_armed_read *
vmgenid_armed_read_add(struct vmgenid_armed_bump *ab, fuse_req_t req)
{
	struct vmgenid_armed_read *read = calloc(1, sizeof(*read));

	if (!read)
		return NULL;
	read->req = req;
	pthread_mutex_lock(&ab->lock);
	read->prev = ab->reads.prev;
	read->next = &ab->reads;
	ab->reads.prev->next = read;
	ab->reads.prev = read;
	pthread_mutex_unlock(&ab->lock);
	return read;
}

/*
 * The daemon is about to answer @read: 1 if it still may, 0 if a fired
 * bump answered it already.  @read is freed either way.
 */
int vmgenid_armed_read_take(struct vmgenid_armed_bump *ab,
			    struct vmgenid_armed_read *read)
{
	int answered;

	pthread_mutex_lock(&ab->lock);
	answered = read->answered;
	if (!answered)
		armed_read_unlink(read);
	pthread_mutex_unlock(&ab->lock);
	free(read);
	return !answered;
}

/* After the thread is gone and every read was taken. */
void vmgenid_armed_bump_free(struct vmgenid_armed_bump *ab)
{
	pthread_mutex_destroy(&ab->lock);
	free(ab);
}
