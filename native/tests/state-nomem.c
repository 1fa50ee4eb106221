// SPDX-License-Identifier: MIT
/*
 * state-nomem
 *
 * The state machine (native/shim/state.c) when memory runs out.  Every
 * transition is run on a few states with its k-th realloc() failing, for
 * k = 0, 1, ... until it no longer fails -ENOMEM; after each -ENOMEM the
 * state must be exactly that of the same state which never tried: its
 * figures, its watchers, its deadline, what it owes and its pending waits
 * (both drained by vmgenid_state_abort()), and the caller's changes still
 * empty.  Linked with -Wl,--wrap=realloc.
 *
 * Prints "failures=N violations=M"; exit 0, or 1 with a line per
 * violation on stderr.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"
#include "testing.h"

void *__real_realloc(void *ptr, size_t size);

static long fail_at = -1;	/* the realloc() that fails, or -1 */
static long reallocs;

void *__wrap_realloc(void *ptr, size_t size)
{
	if (reallocs++ == fail_at)
		return NULL;
	return __real_realloc(ptr, size);
}

enum { A, B, C, D, NWIDS };

/* Poll handles: never dereferenced by the state machine. */
static char handles[4];

struct scene {
	struct vmgenid_state *st;
	uint32_t published;
	uint64_t wid[NWIDS];
	uint32_t counter;	/* the one the transition will see */
};

static void must(int ret, const char *what)
{
	if (ret < 0) {
		fprintf(stderr, "setup: %s: %d\n", what, ret);
		exit(2);
	}
}

/*
 * Four watchers, three of them outdated, two with poll handles, two waits
 * pending; bump_pending: one more bump published, not adopted yet, so
 * the transition adopts it and owes its EINTRs and notifications.
 */
static void setup(struct scene *s, int bump_pending)
{
	struct vmgenid_changes changes = { .bumped_from = -1 };
	uint32_t acked = 11;

	s->published = 10;
	s->st = vmgenid_state_new(10, 2, vmgenid_counter_load, &s->published);
	if (!s->st)
		must(-ENOMEM, "new");
	must(vmgenid_state_open_watcher(s->st, 1000, 1, &s->wid[A]), "open");
	must(vmgenid_state_open_watcher(s->st, 1000, 2, &s->wid[B]), "open");
	must(vmgenid_state_open_watcher(s->st, 0, 3, &s->wid[C]), "open");
	must(vmgenid_state_open_watcher(s->st, 1001, 4, &s->wid[D]), "open");
	must(vmgenid_state_poll(s->st, s->wid[A], &handles[0], &changes),
	     "poll");
	must(vmgenid_state_poll(s->st, s->wid[C], &handles[1], &changes),
	     "poll");
	s->published = 11;
	must(vmgenid_state_ack(s->st, s->wid[C], &acked, sizeof(acked),
			       &changes), "ack");
	must(vmgenid_state_wait_watchers(s->st, s->wid[C], 500, 1.0, 7, NULL),
	     "wait");
	must(vmgenid_state_wait_watchers(s->st, s->wid[C], 0, 1.0, 8, NULL),
	     "wait");
	vmgenid_changes_free(&changes);	/* handed over: the caller's */
	s->counter = 11;
	if (bump_pending) {
		s->published = 12;
		s->counter = 12;
	}
}

/* Transition n on the scene, into changes (empty). */
static int transition(struct scene *s, int n, struct vmgenid_changes *changes)
{
	uint64_t wid;

	switch (n) {
	case 0:
		return vmgenid_state_open_watcher(s->st, 1001, 5, &wid);
	case 1:
		return vmgenid_state_open_watcher(s->st, 2000, 6, &wid);
	case 2:
		return vmgenid_state_ack(s->st, s->wid[A], &s->counter,
					 sizeof(s->counter), changes);
	case 3:
		return vmgenid_state_poll(s->st, s->wid[A], &handles[2],
					  changes);
	case 4:
		return vmgenid_state_poll(s->st, s->wid[B], &handles[3],
					  changes);
	case 5:
		return vmgenid_state_release(s->st, s->wid[A], changes);
	case 6:
		return vmgenid_state_release(s->st, s->wid[C], changes);
	case 7:
		return vmgenid_state_wait_watchers(s->st, s->wid[C], 100, 2.0,
						   9, NULL);
	case 8:
		return vmgenid_state_adopt(s->st, changes);
	case 9:
		return vmgenid_state_interrupt(s->st, 7, changes);
	case 10:
		return vmgenid_state_expire(s->st, 100.0, changes);
	case 11:
		return vmgenid_state_abort(s->st, ESHUTDOWN, changes);
	}
	return -ENOSYS;
}

#define TRANSITIONS 12

static size_t print_changes(char *out, size_t room,
			    const struct vmgenid_changes *c)
{
	size_t len = 0, i;

	len += snprintf(out + len, room - len, " from=%lld figures=%d",
			(long long)c->bumped_from, c->figures);
	for (i = 0; i < c->ncompletions && len < room; i++)
		len += snprintf(out + len, room - len, " c%llu:%d",
				(unsigned long long)c->completions[i].token,
				c->completions[i].err);
	for (i = 0; i < c->nwake && len < room; i++)
		len += snprintf(out + len, room - len, " n%td",
				(char *)c->wake[i] - handles);
	for (i = 0; i < c->nrelease && len < room; i++)
		len += snprintf(out + len, room - len, " r%td",
				(char *)c->release[i] - handles);
	return len < room ? len : room;
}

/* All the state shows, in text; it drains the state (abort). */
static void fingerprint(struct vmgenid_state *st, char *out, size_t room)
{
	struct vmgenid_changes drained = { .bumped_from = -1 };
	struct vmgenid_watcher_info info[8];
	struct vmgenid_state_summary sum;
	double deadline = -1;
	size_t n, i, len;
	int has_deadline;

	n = vmgenid_state_snapshot(st, info, 8, &sum);
	has_deadline = vmgenid_state_next_deadline(st, &deadline);
	len = snprintf(out, room, "counter=%u outdated=%zu watchers=%zu "
		       "pending=%zu deadline=%d:%g", sum.counter, sum.outdated,
		       sum.watchers, sum.pending, has_deadline, deadline);
	for (i = 0; i < n && len < room; i++)
		len += snprintf(out + len, room - len, " w%llx:%u:%d:%u",
				(unsigned long long)info[i].wid, info[i].uid,
				info[i].pid, info[i].acked);
	if (len < room && vmgenid_state_abort(st, ECANCELED, &drained))
		len += snprintf(out + len, room - len, " abort failed");
	if (len < room)
		print_changes(out + len, room - len, &drained);
	vmgenid_changes_free(&drained);
}

int main(void)
{
	long failures = 0, violations = 0, k;
	char want[1024], got[1024];
	int n, bump_pending;

	for (bump_pending = 0; bump_pending < 2; bump_pending++) {
		for (n = 0; n < TRANSITIONS; n++) {
			struct scene untouched;

			setup(&untouched, bump_pending);
			fingerprint(untouched.st, want, sizeof(want));
			vmgenid_state_free(untouched.st);
			for (k = 0;; k++) {
				struct vmgenid_changes changes = {
					.bumped_from = -1 };
				struct scene s;
				int ret;

				setup(&s, bump_pending);
				fail_at = reallocs + k;
				ret = transition(&s, n, &changes);
				fail_at = -1;
				if (ret != -ENOMEM) {
					vmgenid_changes_free(&changes);
					vmgenid_state_free(s.st);
					break;
				}
				failures++;
				print_changes(got, sizeof(got), &changes);
				if (strcmp(got, " from=-1 figures=0")) {
					violations++;
					fprintf(stderr, "bump_pending=%d "
						"transition %d realloc %ld: "
						"caller's%s\n", bump_pending,
						n, k, got);
				}
				fingerprint(s.st, got, sizeof(got));
				if (strcmp(got, want)) {
					violations++;
					fprintf(stderr, "bump_pending=%d "
						"transition %d realloc %ld:\n"
						"  want %s\n  got  %s\n",
						bump_pending, n, k, want, got);
				}
				vmgenid_changes_free(&changes);
				vmgenid_state_free(s.st);
			}
		}
	}
	printf("failures=%ld violations=%ld\n", failures, violations);
	return violations ? 1 : 0;
}
