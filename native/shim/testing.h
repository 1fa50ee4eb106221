/* SPDX-License-Identifier: MIT */
/*
 * What only the C tests reach (native/tests/publisher-race.c,
 * state-nomem.c): compiled in with -DVMGENID_TESTING, which the cffi
 * module's build never sets, so none of this ships in the package.
 */
#ifndef VMGENID_TESTING_H
#define VMGENID_TESTING_H

#include <stddef.h>
#include <stdint.h>

#include "publisher.h"
#include "state.h"

/*
 * Where the published counter is, for a reader that loads it without the
 * lock, as the state machine's vmgenid_publisher_published() does.
 */
const uint32_t *vmgenid_publisher_counter(struct vmgenid_publisher *pub);

/* A published counter kept in a plain cell: a state machine's own. */
uint32_t vmgenid_counter_load(void *counter);

/* The figures of one vmgenid_state_snapshot(), under the same lock. */
struct vmgenid_state_summary {
	uint32_t counter;
	size_t outdated;
	size_t watchers;
	size_t pending;
};

/* Every watcher (up to room, oldest open first) and the figures, at once. */
size_t vmgenid_state_snapshot(struct vmgenid_state *st,
			      struct vmgenid_watcher_info *out, size_t room,
			      struct vmgenid_state_summary *summary);

#endif /* VMGENID_TESTING_H */
