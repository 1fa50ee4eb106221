/* SPDX-License-Identifier: MIT */
/*
 * The generation state machine (state.c): counter, watchers, acks, polls,
 * WAIT_WATCHERS.  Pure (no I/O, no clock: callers pass "now"), one lock;
 * every function below is one atomic transition.  They return 0 or -errno
 * unless said otherwise, and an error (-ENOMEM too) changes nothing but
 * the adoption of a published counter, which never fails.  A transition
 * with "changes" appends to it what adopting a bump owes (each poll handle
 * once, however many bumps) and its own completions and releases.
 * Watcher ids are never 0; one comes again only after 2^32 opens of
 * its slot.
 */
#ifndef VMGENID_STATE_H
#define VMGENID_STATE_H

#include <stddef.h>
#include <stdint.h>

#define VMGENID_COUNTER_MAX	0xFFFFFFFF
/* FORCE_GEN_UPDATE_MIN stops here, so plain bumps can never wrap. */
#define VMGENID_MIN_TARGET_MAX	0x7FFFFFFF
#define VMGENID_COUNTER_SIZE	4
/* vmgenid_state_read(): the answer is *counter now, or the read waits. */
#define VMGENID_READ_NOW	1
#define VMGENID_READ_BLOCKS	2

struct vmgenid_state;

/* The reply owed to one WAIT_WATCHERS call: 0 (none outdated) or an errno. */
struct vmgenid_completion {
	uint64_t token;
	void *req;
	int err;
};

/*
 * What a transition asks its caller to do after the lock is gone.  The
 * caller owns it: vmgenid_changes_clear() before reuse, _free() at the end.
 */
struct vmgenid_changes {
	struct vmgenid_completion *completions;
	size_t ncompletions, completions_room;
	void **wake;			/* poll handles to wake */
	size_t nwake, wake_room;
	void **release;			/* poll handles to destroy */
	size_t nrelease, release_room;
	int64_t bumped_from;		/* -1: no bump adopted */
	int figures;			/* a figure the status shows changed */
};

/* A watcher, as status reports and tests see it. */
struct vmgenid_watcher_info {
	uint64_t wid;
	uint32_t uid;
	int32_t pid;
	uint32_t acked;
};

/* How many outdated watchers one uid holds. */
struct vmgenid_uid_outdated {
	uint32_t uid;
	uint32_t outdated;
};

/* The counter published now (vmgenid_publisher_published()). */
typedef uint32_t (*vmgenid_published_fn)(void *ctx);

void vmgenid_changes_clear(struct vmgenid_changes *changes);
void vmgenid_changes_free(struct vmgenid_changes *changes);

struct vmgenid_state *vmgenid_state_new(uint32_t counter,
					unsigned int max_per_uid,
					vmgenid_published_fn published,
					void *published_ctx);
void vmgenid_state_free(struct vmgenid_state *st);

uint32_t vmgenid_state_counter(struct vmgenid_state *st);
size_t vmgenid_state_outdated(struct vmgenid_state *st);
size_t vmgenid_state_watchers(struct vmgenid_state *st);
int vmgenid_state_next_deadline(struct vmgenid_state *st, double *deadline);
size_t vmgenid_state_list(struct vmgenid_state *st, int outdated_only,
			  struct vmgenid_watcher_info *out, size_t room,
			  uint32_t *counter);
/*
 * Each uid that holds outdated watchers and how many, by uid, into out
 * (room entries); returns how many.  *need: the room it takes (the uids
 * holding any watcher): with less room nothing is written and it returns 0.
 */
size_t vmgenid_state_outdated_by_uid(struct vmgenid_state *st,
				     struct vmgenid_uid_outdated *out,
				     size_t room, size_t *need);

int vmgenid_state_open_watcher(struct vmgenid_state *st, uint32_t uid,
			       int32_t pid, uint64_t *wid);
int vmgenid_state_read(struct vmgenid_state *st, uint64_t wid, size_t size,
		       int nonblock, uint32_t *counter);
int vmgenid_state_ack(struct vmgenid_state *st, uint64_t wid,
		      const void *data, size_t size,
		      struct vmgenid_changes *changes);
int vmgenid_state_poll(struct vmgenid_state *st, uint64_t wid, void *handle,
		       struct vmgenid_changes *changes);
int vmgenid_state_release(struct vmgenid_state *st, uint64_t wid,
			  struct vmgenid_changes *changes);
/* 0: answered (none outdated); 1: kept under token; -EEXIST: token kept. */
int vmgenid_state_wait_watchers(struct vmgenid_state *st, uint64_t wid,
				uint32_t timeout_ms, double now,
				uint64_t token, void *req);

int vmgenid_state_plan_bump(struct vmgenid_state *st, int64_t minimum,
			    uint32_t *from, uint32_t *to);
int vmgenid_state_adopt(struct vmgenid_state *st,
			struct vmgenid_changes *changes);
int vmgenid_state_interrupt(struct vmgenid_state *st, uint64_t token,
			    struct vmgenid_changes *changes);
int vmgenid_state_expire(struct vmgenid_state *st, double now,
			 struct vmgenid_changes *changes);
int vmgenid_state_abort(struct vmgenid_state *st, int err,
			struct vmgenid_changes *changes);

#endif /* VMGENID_STATE_H */
