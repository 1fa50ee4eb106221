// SPDX-License-Identifier: MIT
/*
 * The generation state machine: counter, watchers, acks, polls,
 * WAIT_WATCHERS (state.h).  Every function is one atomic transition under
 * one lock, so the v2 review's races (a change between the "is it
 * outdated?" test and the count change, in close and in write) cannot
 * happen: the test and the change sit under the same lock.
 *
 * Bumps are published elsewhere (publisher.c); every transition first
 * adopts the counter published since (st->published, called under our
 * lock: the lock order is state, then publisher).  What adopting owes
 * (EINTR to waits, poll wake-ups) stays owed until a transition with
 * a "changes" argument hands it over.
 *
 * Memory: every transition reserves what it needs before it changes
 * anything, so -ENOMEM changes nothing.  Adopting never allocates: the
 * owed arrays keep room for one wake-up per watcher (reserved by
 * open) and one completion per pending wait (reserved by wait_watchers).
 *
 * A watcher id is its slot index (low 32 bits) and the slot's generation
 * (high 32 bits, never 0): found in O(1), and a stale id gives -EBADF.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"
#ifdef VMGENID_TESTING
#include "testing.h"
#endif

#define NO_SLOT UINT32_MAX

struct watcher {
	uint32_t gen;		/* the id's high half: never 0 */
	int live;
	uint32_t uid;
	int32_t pid;
	uint32_t acked;
	void *poll_handle;
	uint32_t prev, next;	/* open order when live; next: free list */
};

struct pending_wait {
	uint64_t token;
	void *req;
	uint64_t wid;
	double deadline;
	int has_deadline;
};

struct uid_count {
	uint32_t uid;
	unsigned int count;
};

struct vmgenid_state {
	pthread_mutex_t lock;
	uint32_t counter;
	vmgenid_published_fn published;
	void *published_ctx;
	unsigned int max_per_uid;

	struct watcher *slots;
	uint32_t nslots, slots_room;
	uint32_t free_slot;		/* free list head */
	uint32_t oldest, newest;	/* open order */
	size_t nwatchers;
	size_t outdated;

	struct uid_count *uids;		/* sorted by uid */
	size_t nuids, uids_room;

	struct pending_wait *waits;
	size_t nwaits, waits_room;

	struct vmgenid_changes owed;
};

static int reserve(void **array, size_t *room, size_t need, size_t size)
{
	size_t new_room;
	void *grown;

	if (need <= *room)
		return 0;
	new_room = *room > 4 ? *room : 4;
	while (new_room < need) {
		if (new_room > SIZE_MAX / 2)
			return -ENOMEM;
		new_room *= 2;
	}
	if (new_room > SIZE_MAX / size)
		return -ENOMEM;
	grown = realloc(*array, new_room * size);
	if (!grown)
		return -ENOMEM;
	*array = grown;
	*room = new_room;
	return 0;
}

/* Room in changes for this many more of each. */
static int reserve_changes(struct vmgenid_changes *changes, size_t ncompletions,
			   size_t nwake, size_t nrelease)
{
	int err;

	err = reserve((void **)&changes->completions,
		      &changes->completions_room,
		      changes->ncompletions + ncompletions,
		      sizeof(*changes->completions));
	if (!err)
		err = reserve((void **)&changes->wake, &changes->wake_room,
			      changes->nwake + nwake,
			      sizeof(*changes->wake));
	if (!err)
		err = reserve((void **)&changes->release,
			      &changes->release_room,
			      changes->nrelease + nrelease,
			      sizeof(*changes->release));
	return err;
}

static void complete(struct vmgenid_changes *changes,
		     const struct pending_wait *wait, int err)
{
	struct vmgenid_completion *c;

	c = &changes->completions[changes->ncompletions++];
	c->token = wait->token;
	c->req = wait->req;
	c->err = err;
}

void vmgenid_changes_clear(struct vmgenid_changes *changes)
{
	changes->ncompletions = 0;
	changes->nwake = 0;
	changes->nrelease = 0;
	changes->bumped_from = -1;
	changes->figures = 0;
}

void vmgenid_changes_free(struct vmgenid_changes *changes)
{
	free(changes->completions);
	free(changes->wake);
	free(changes->release);
	memset(changes, 0, sizeof(*changes));
	changes->bumped_from = -1;
}

struct vmgenid_state *vmgenid_state_new(uint32_t counter,
					unsigned int max_per_uid,
					vmgenid_published_fn published,
					void *published_ctx)
{
	struct vmgenid_state *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	if (pthread_mutex_init(&st->lock, NULL)) {
		free(st);
		return NULL;
	}
	st->counter = counter;
	st->max_per_uid = max_per_uid;
	st->published = published;
	st->published_ctx = published_ctx;
	st->free_slot = NO_SLOT;
	st->oldest = NO_SLOT;
	st->newest = NO_SLOT;
	st->owed.bumped_from = -1;
	return st;
}

void vmgenid_state_free(struct vmgenid_state *st)
{
	if (!st)
		return;
	pthread_mutex_destroy(&st->lock);
	free(st->slots);
	free(st->uids);
	free(st->waits);
	vmgenid_changes_free(&st->owed);
	free(st);
}

/* -- internals (lock held) ------------------------------------------------ */

static uint64_t wid_of(const struct vmgenid_state *st, uint32_t slot)
{
	return (uint64_t)st->slots[slot].gen << 32 | slot;
}

static struct watcher *lookup(struct vmgenid_state *st, uint64_t wid)
{
	uint32_t slot = (uint32_t)wid;
	struct watcher *w;

	if (slot >= st->nslots)
		return NULL;
	w = &st->slots[slot];
	if (!w->live || w->gen != wid >> 32)
		return NULL;
	return w;
}

static int is_outdated(const struct vmgenid_state *st, const struct watcher *w)
{
	return w->acked != st->counter;
}

/* The waits match() picks (every one if NULL) complete with err, in order. */
static void complete_where(struct vmgenid_state *st,
			   struct vmgenid_changes *changes, int err,
			   int (*match)(const struct pending_wait *wait,
					const void *arg),
			   const void *arg)
{
	size_t i, kept = 0;

	for (i = 0; i < st->nwaits; i++) {
		if (!match || match(&st->waits[i], arg))
			complete(changes, &st->waits[i], err);
		else
			st->waits[kept++] = st->waits[i];
	}
	st->nwaits = kept;
}

static int of_watcher(const struct pending_wait *wait, const void *wid)
{
	return wait->wid == *(const uint64_t *)wid;
}

static int with_token(const struct pending_wait *wait, const void *token)
{
	return wait->token == *(const uint64_t *)token;
}

static int due_by(const struct pending_wait *wait, const void *now)
{
	return wait->has_deadline && wait->deadline <= *(const double *)now;
}

static void adopt_counter(struct vmgenid_state *st, uint32_t published)
{
	struct vmgenid_changes *owed = &st->owed;
	int woken = owed->bumped_from >= 0;
	uint32_t slot;

	/*
	 * A bump already owed has every poll handle in owed->wake: handles
	 * only change in transitions that hand the owed over first.
	 */
	if (!woken)
		owed->bumped_from = st->counter;
	st->counter = published;
	/* Every watcher acked an older value, so all are outdated now. */
	st->outdated = st->nwatchers;
	/* A waiter is outdated now: EINTR, as for an outdated caller. */
	complete_where(st, owed, EINTR, NULL, NULL);
	if (!woken)
		for (slot = st->oldest; slot != NO_SLOT;
		     slot = st->slots[slot].next)
			if (st->slots[slot].poll_handle)
				owed->wake[owed->nwake++] =
					st->slots[slot].poll_handle;
	owed->figures = 1;
}

/* Every transition's first step: the counter published since the last. */
static void adopt(struct vmgenid_state *st)
{
	uint32_t published = st->counter;

	if (st->published)
		published = st->published(st->published_ctx);
	if (published != st->counter)
		adopt_counter(st, published);
}

/* Every call on a watcher starts here: the lock, adoption, the watcher. */
static struct watcher *lock_watcher(struct vmgenid_state *st, uint64_t wid)
{
	pthread_mutex_lock(&st->lock);
	adopt(st);
	return lookup(st, wid);
}

/*
 * The owed goes to the caller, with room reserved there for this many more
 * completions and releases of the transition's own: -ENOMEM changes nothing.
 */
static int hand_over(struct vmgenid_state *st, struct vmgenid_changes *changes,
		     size_t ncompletions, size_t nrelease)
{
	struct vmgenid_changes *owed = &st->owed;
	int err;

	err = reserve_changes(changes, owed->ncompletions + ncompletions,
			      owed->nwake, nrelease);
	if (err)
		return err;
	/* Empty arrays may be NULL, which memcpy() may not be given. */
	if (owed->ncompletions)
		memcpy(changes->completions + changes->ncompletions,
		       owed->completions,
		       owed->ncompletions * sizeof(*owed->completions));
	changes->ncompletions += owed->ncompletions;
	if (owed->nwake)
		memcpy(changes->wake + changes->nwake, owed->wake,
		       owed->nwake * sizeof(*owed->wake));
	changes->nwake += owed->nwake;
	if (changes->bumped_from < 0)
		changes->bumped_from = owed->bumped_from;
	changes->figures |= owed->figures;
	vmgenid_changes_clear(owed);
	return 0;
}

/* A watcher stopped being outdated (room: one completion per wait). */
static void drop_outdated(struct vmgenid_state *st,
			  struct vmgenid_changes *changes)
{
	changes->figures = 1;
	if (--st->outdated)
		return;
	complete_where(st, changes, 0, NULL, NULL);
}

static struct uid_count *find_uid(struct vmgenid_state *st, uint32_t uid,
				  size_t *at)
{
	size_t lo = 0, hi = st->nuids;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (st->uids[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	*at = lo;
	if (lo < st->nuids && st->uids[lo].uid == uid)
		return &st->uids[lo];
	return NULL;
}

/* -- queries --------------------------------------------------------------- */

/* The figures, under the lock, once adopted. */
struct figures {
	uint32_t counter;
	size_t outdated;
	size_t watchers;
};

/* Lock held. */
static struct figures figures_locked(struct vmgenid_state *st)
{
	struct figures f;

	adopt(st);
	f.counter = st->counter;
	f.outdated = st->outdated;
	f.watchers = st->nwatchers;
	return f;
}

static struct figures figures(struct vmgenid_state *st)
{
	struct figures f;

	pthread_mutex_lock(&st->lock);
	f = figures_locked(st);
	pthread_mutex_unlock(&st->lock);
	return f;
}

uint32_t vmgenid_state_counter(struct vmgenid_state *st)
{
	return figures(st).counter;
}

size_t vmgenid_state_outdated(struct vmgenid_state *st)
{
	return figures(st).outdated;
}

size_t vmgenid_state_watchers(struct vmgenid_state *st)
{
	return figures(st).watchers;
}

int vmgenid_state_next_deadline(struct vmgenid_state *st, double *deadline)
{
	int found = 0;
	size_t i;

	pthread_mutex_lock(&st->lock);
	adopt(st);
	for (i = 0; i < st->nwaits; i++) {
		const struct pending_wait *wait = &st->waits[i];

		if (wait->has_deadline && (!found || wait->deadline < *deadline)) {
			*deadline = wait->deadline;
			found = 1;
		}
	}
	pthread_mutex_unlock(&st->lock);
	return found;
}

/* Lock held: up to room watchers, oldest open first. */
static size_t list_locked(struct vmgenid_state *st, int outdated_only,
			  struct vmgenid_watcher_info *out, size_t room)
{
	uint32_t slot;
	size_t n = 0;

	if (outdated_only && !st->outdated)
		return 0;
	for (slot = st->oldest; slot != NO_SLOT && n < room;
	     slot = st->slots[slot].next) {
		const struct watcher *w = &st->slots[slot];

		if (outdated_only && !is_outdated(st, w))
			continue;
		out[n].wid = wid_of(st, slot);
		out[n].uid = w->uid;
		out[n].pid = w->pid;
		out[n].acked = w->acked;
		n++;
	}
	return n;
}

size_t vmgenid_state_list(struct vmgenid_state *st, int outdated_only,
			  struct vmgenid_watcher_info *out, size_t room,
			  uint32_t *counter)
{
	size_t n;

	pthread_mutex_lock(&st->lock);
	adopt(st);
	n = list_locked(st, outdated_only, out, room);
	*counter = st->counter;
	pthread_mutex_unlock(&st->lock);
	return n;
}

size_t vmgenid_state_outdated_by_uid(struct vmgenid_state *st,
				     struct vmgenid_uid_outdated *out,
				     size_t room, size_t *need)
{
	size_t i, at, n = 0;
	uint32_t slot;

	pthread_mutex_lock(&st->lock);
	adopt(st);
	*need = st->nuids;
	if (room < st->nuids)
		goto out;
	/* out starts as st->uids (sorted, every uid with a watcher)... */
	for (i = 0; i < st->nuids; i++) {
		out[i].uid = st->uids[i].uid;
		out[i].outdated = 0;
	}
	for (slot = st->oldest; st->outdated && slot != NO_SLOT;
	     slot = st->slots[slot].next) {
		const struct watcher *w = &st->slots[slot];

		if (is_outdated(st, w) && find_uid(st, w->uid, &at))
			out[at].outdated++;
	}
	/* ...and keeps those with an outdated one. */
	for (i = 0; i < st->nuids; i++)
		if (out[i].outdated)
			out[n++] = out[i];
out:
	pthread_mutex_unlock(&st->lock);
	return n;
}

#ifdef VMGENID_TESTING
uint32_t vmgenid_counter_load(void *counter)
{
	return __atomic_load_n((uint32_t *)counter, __ATOMIC_ACQUIRE);
}

size_t vmgenid_state_snapshot(struct vmgenid_state *st,
			      struct vmgenid_watcher_info *out, size_t room,
			      struct vmgenid_state_summary *summary)
{
	struct figures f;
	size_t n;

	pthread_mutex_lock(&st->lock);
	f = figures_locked(st);
	summary->counter = f.counter;
	summary->outdated = f.outdated;
	summary->watchers = f.watchers;
	summary->pending = st->nwaits;
	n = list_locked(st, 0, out, room);
	pthread_mutex_unlock(&st->lock);
	return n;
}
#endif

/* -- file operations ------------------------------------------------------- */

/* Lock held: a free slot, made if need be; nothing changes but memory. */
static int reserve_slot(struct vmgenid_state *st, uint32_t *slot)
{
	size_t room = st->slots_room;
	int err;

	if (st->free_slot != NO_SLOT) {
		*slot = st->free_slot;
		return 0;
	}
	if (st->nslots == NO_SLOT)
		return -ENFILE;
	err = reserve((void **)&st->slots, &room, (size_t)st->nslots + 1,
		      sizeof(*st->slots));
	if (err)
		return err;
	st->slots_room = room > NO_SLOT ? NO_SLOT : (uint32_t)room;
	*slot = st->nslots;
	return 0;
}

int vmgenid_state_open_watcher(struct vmgenid_state *st, uint32_t uid,
			       int32_t pid, uint64_t *wid)
{
	const struct uid_count *held;
	unsigned int count;
	struct watcher *w;
	uint32_t slot;
	size_t at;
	int err;

	pthread_mutex_lock(&st->lock);
	adopt(st);
	/* held dangles once reserve() moves st->uids: keep at and count. */
	held = find_uid(st, uid, &at);
	count = held ? held->count : 0;
	err = -EDQUOT;
	if (uid != 0 && count >= st->max_per_uid)
		goto out;
	err = reserve((void **)&st->uids, &st->uids_room, st->nuids + 1,
		      sizeof(*st->uids));
	if (!err)
		err = reserve((void **)&st->owed.wake, &st->owed.wake_room,
			      st->nwatchers + 1, sizeof(*st->owed.wake));
	if (!err)
		err = reserve_slot(st, &slot);
	if (err)
		goto out;

	if (count) {
		st->uids[at].count++;
	} else {
		memmove(&st->uids[at + 1], &st->uids[at],
			(st->nuids - at) * sizeof(*st->uids));
		st->uids[at].uid = uid;
		st->uids[at].count = 1;
		st->nuids++;
	}
	if (slot == st->free_slot)
		st->free_slot = st->slots[slot].next;
	else
		st->slots[st->nslots++].gen = 0;
	w = &st->slots[slot];
	if (++w->gen == 0)
		w->gen = 1;
	w->live = 1;
	w->uid = uid;
	w->pid = pid;
	w->acked = st->counter;
	w->poll_handle = NULL;
	w->prev = st->newest;
	w->next = NO_SLOT;
	if (st->newest != NO_SLOT)
		st->slots[st->newest].next = slot;
	else
		st->oldest = slot;
	st->newest = slot;
	st->nwatchers++;
	*wid = wid_of(st, slot);
out:
	pthread_mutex_unlock(&st->lock);
	return err;
}

int vmgenid_state_read(struct vmgenid_state *st, uint64_t wid, size_t size,
		       int nonblock, uint32_t *counter)
{
	struct watcher *w;
	int ret;

	w = lock_watcher(st, wid);
	if (!w)
		ret = -EBADF;
	else if (size == 0)
		ret = 0;
	else if (size < VMGENID_COUNTER_SIZE)
		ret = -EINVAL;
	else if (is_outdated(st, w))
		ret = VMGENID_READ_NOW;
	else if (nonblock)
		ret = -EAGAIN;
	else
		ret = VMGENID_READ_BLOCKS;
	if (ret > 0)
		*counter = st->counter;
	pthread_mutex_unlock(&st->lock);
	return ret;
}

int vmgenid_state_ack(struct vmgenid_state *st, uint64_t wid,
		      const void *data, size_t size,
		      struct vmgenid_changes *changes)
{
	struct watcher *w;
	uint32_t value;
	int err, outdated;

	w = lock_watcher(st, wid);
	err = -EBADF;
	if (!w)
		goto out;
	err = -EINVAL;
	if (size != VMGENID_COUNTER_SIZE)
		goto out;
	memcpy(&value, data, sizeof(value));
	if (value != st->counter)
		goto out;
	outdated = is_outdated(st, w);
	err = hand_over(st, changes, outdated ? st->nwaits : 0, 0);
	if (err)
		goto out;
	if (outdated) {
		w->acked = st->counter;
		drop_outdated(st, changes);
	}
out:
	pthread_mutex_unlock(&st->lock);
	return err;
}

int vmgenid_state_poll(struct vmgenid_state *st, uint64_t wid, void *handle,
		       struct vmgenid_changes *changes)
{
	struct watcher *w;
	int ret;

	w = lock_watcher(st, wid);
	ret = -EBADF;
	if (!w)
		goto out;
	ret = hand_over(st, changes, 0, handle && w->poll_handle);
	if (ret)
		goto out;
	if (handle) {
		if (w->poll_handle)
			changes->release[changes->nrelease++] = w->poll_handle;
		w->poll_handle = handle;
	}
	ret = is_outdated(st, w);
out:
	pthread_mutex_unlock(&st->lock);
	return ret;
}

int vmgenid_state_release(struct vmgenid_state *st, uint64_t wid,
			  struct vmgenid_changes *changes)
{
	struct uid_count *held;
	struct watcher *w;
	uint32_t slot = (uint32_t)wid;
	size_t at;
	int err;

	w = lock_watcher(st, wid);
	err = -EBADF;
	if (!w)
		goto out;
	err = hand_over(st, changes, st->nwaits, 1);
	if (err)
		goto out;
	/*
	 * Unreachable through the kernel (a blocked call holds the file), but
	 * nothing may stay pending for a watcher that is gone.
	 */
	complete_where(st, changes, EBADF, of_watcher, &wid);
	if (w->poll_handle)
		changes->release[changes->nrelease++] = w->poll_handle;
	held = find_uid(st, w->uid, &at);
	if (held && !--held->count) {
		memmove(&st->uids[at], &st->uids[at + 1],
			(st->nuids - at - 1) * sizeof(*st->uids));
		st->nuids--;
	}
	if (w->prev != NO_SLOT)
		st->slots[w->prev].next = w->next;
	else
		st->oldest = w->next;
	if (w->next != NO_SLOT)
		st->slots[w->next].prev = w->prev;
	else
		st->newest = w->prev;
	st->nwatchers--;
	if (is_outdated(st, w))
		drop_outdated(st, changes);
	changes->figures = 1;
	/* The generation stays: the next open of this slot gets a new id. */
	w->live = 0;
	w->poll_handle = NULL;
	w->next = st->free_slot;
	st->free_slot = slot;
out:
	pthread_mutex_unlock(&st->lock);
	return err;
}

int vmgenid_state_wait_watchers(struct vmgenid_state *st, uint64_t wid,
				uint32_t timeout_ms, double now,
				uint64_t token, void *req)
{
	struct pending_wait *wait;
	struct watcher *w;
	size_t i;
	int ret;

	w = lock_watcher(st, wid);
	ret = -EBADF;
	if (!w)
		goto out;
	ret = -EINTR;
	if (is_outdated(st, w))
		goto out;
	ret = 0;
	if (!st->outdated)
		goto out;
	ret = -EEXIST;
	for (i = 0; i < st->nwaits; i++)
		if (st->waits[i].token == token)
			goto out;
	/* The owed keeps room for the EINTR an adopted bump owes each. */
	ret = reserve((void **)&st->waits, &st->waits_room, st->nwaits + 1,
		      sizeof(*st->waits));
	if (!ret)
		ret = reserve((void **)&st->owed.completions,
			      &st->owed.completions_room,
			      st->owed.ncompletions + st->nwaits + 1,
			      sizeof(*st->owed.completions));
	if (ret)
		goto out;
	wait = &st->waits[st->nwaits++];
	wait->token = token;
	wait->req = req;
	wait->wid = wid;
	wait->has_deadline = timeout_ms != 0;
	wait->deadline = now + timeout_ms / 1000.0;
	ret = 1;
out:
	pthread_mutex_unlock(&st->lock);
	return ret;
}

/* -- changes of generation ------------------------------------------------- */

int vmgenid_state_plan_bump(struct vmgenid_state *st, int64_t minimum,
			    uint32_t *from, uint32_t *to)
{
	uint64_t target;
	int err = 0;

	pthread_mutex_lock(&st->lock);
	adopt(st);
	target = (uint64_t)st->counter + 1;
	if (minimum >= 0) {
		if ((uint64_t)minimum > target)
			target = minimum;
		if (target > VMGENID_MIN_TARGET_MAX)
			err = -EOVERFLOW;
	}
	if (target > VMGENID_COUNTER_MAX)
		err = -EOVERFLOW;
	if (!err) {
		*from = st->counter;
		*to = (uint32_t)target;
	}
	pthread_mutex_unlock(&st->lock);
	return err;
}

/* What adopting the published counter owes, handed over. */
int vmgenid_state_adopt(struct vmgenid_state *st,
			struct vmgenid_changes *changes)
{
	int err;

	pthread_mutex_lock(&st->lock);
	adopt(st);
	err = hand_over(st, changes, 0, 0);
	pthread_mutex_unlock(&st->lock);
	return err;
}

/* -- ends of waiting ------------------------------------------------------- */

/* The waits match() picks (every one if NULL) complete with err. */
static int end_waits(struct vmgenid_state *st, struct vmgenid_changes *changes,
		     int err, int (*match)(const struct pending_wait *wait,
					   const void *arg),
		     const void *arg)
{
	int ret;

	pthread_mutex_lock(&st->lock);
	adopt(st);
	ret = hand_over(st, changes, st->nwaits, 0);
	if (!ret)
		complete_where(st, changes, err, match, arg);
	pthread_mutex_unlock(&st->lock);
	return ret;
}

int vmgenid_state_interrupt(struct vmgenid_state *st, uint64_t token,
			    struct vmgenid_changes *changes)
{
	return end_waits(st, changes, EINTR, with_token, &token);
}

int vmgenid_state_expire(struct vmgenid_state *st, double now,
			 struct vmgenid_changes *changes)
{
	return end_waits(st, changes, ETIME, due_by, &now);
}

int vmgenid_state_abort(struct vmgenid_state *st, int err,
			struct vmgenid_changes *changes)
{
	return end_waits(st, changes, err, NULL, NULL);
}
