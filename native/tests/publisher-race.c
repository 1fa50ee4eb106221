// SPDX-License-Identifier: MIT
/*
 * publisher-race [PUBLICATIONS]
 *
 * The publisher (native/shim/publisher.c) with its real state file and
 * page, under the concurrency the daemon gives it, for ThreadSanitizer
 * (make -C native tsan: build/tsan/publisher-race) and Helgrind (the plain
 * build/publisher-race, with publisher-race.supp):
 *
 *  - the daemon: vmgenid_publisher_bump() through its state machine
 *    (which chooses again when the thread published since its choice),
 *    then vmgenid_publisher_take() and now and then
 *    vmgenid_publisher_save() and vmgenid_publisher_guid();
 *  - the GUID poll thread: vmgenid_publisher_hardware() with alternating
 *    GUIDs (each one a bump);
 *  - blocked reads: vmgenid_publisher_wait() at the counter loaded without
 *    the lock, as the state machine does, and one in four at a counter
 *    known to be stale;
 *  - interrupts: vmgenid_publisher_cancel() of recently registered reads;
 *  - a page client: the page's counter, then the publisher's.
 *
 * Each of the two publishers bumps PUBLICATIONS times (default 200).  The
 * checks: every read gets exactly one reply (a counter, EINTR from its
 * cancel, or ESHUTDOWN from the final abort); a counter reply is above the
 * counter the read waited at; a read known stale is answered before
 * vmgenid_publisher_wait() returns; reads registered one after the other
 * are answered with counters in that order; each report taken counts
 * +1 per publication and what was replied; the page never runs ahead of
 * the counter; at the end the page and the state file hold the final
 * counter.  Exit 0, or 1 with a line per violation on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/mman.h>

#include "../shim/guid.h"
#include "../shim/page.h"
#include "../shim/publisher.h"
#include "../shim/state.h"
#include "../shim/statefile.h"
#include "../shim/testing.h"

#define START_COUNTER	100
#define MAX_READS	200000		/* the registrations' bound */
#define READS_PER_BUMP	8		/* registered before one waits */
#define RECENT		16		/* the reads an interrupt picks from */
#define MAX_REPORTED	20		/* violations printed */
#define STATE_NAME	"state.json"
#define STATE_TMP	"state.json.new"
#define PAGE_NAME	"page"

enum { REPLY_NONE, REPLY_COUNTER, REPLY_ERR };

/* A blocked read, as the reply callbacks see it (the request). */
struct read {
	uint32_t seen;			/* the counter it waited at */
	int stale;			/* known older than the published one */
	int registered;			/* vmgenid_publisher_wait() returned 0 */
	/* Written by the reply callbacks, any thread. */
	uint32_t replies;
	int kind;
	uint32_t value;
	int err;
};

static struct read reads[MAX_READS];
static uint32_t nr_reads;		/* registered so far (release) */
static const uint32_t *published;	/* vmgenid_publisher_counter() */
static uint32_t *page_map;
static unsigned int publications = 200;

/* Threads' end flags and totals, atomic. */
static uint32_t publishers_done, registrations_done;
static unsigned int violations, cancelled;
/* The daemon's state machine, which adopts what the publisher published. */
static struct vmgenid_state *st;

/* Publication reports taken, the daemon's (joined before they are read). */
static unsigned int taken_count, taken_hardware, taken_replies;

/*
 * The lock-free loads and stores between threads: the state machine's load
 * of the counter, the page client's, the threads' flags.  Helgrind does
 * not model atomics (an x86 atomic load or store is a plain mov) and
 * reports each as a race; publisher-race.supp names these two functions.
 */
static __attribute__((noinline)) uint32_t load_acquire(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static __attribute__((noinline)) void store_release(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static void violation(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static void violation(const char *fmt, ...)
{
	va_list ap;

	if (__atomic_add_fetch(&violations, 1, __ATOMIC_RELAXED) >
	    MAX_REPORTED)
		return;
	va_start(ap, fmt);
	fputs("publisher-race: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void record_reply(struct read *read, int kind, uint32_t value, int err)
{
	__atomic_store_n(&read->kind, kind, __ATOMIC_RELAXED);
	__atomic_store_n(&read->value, value, __ATOMIC_RELAXED);
	__atomic_store_n(&read->err, err, __ATOMIC_RELAXED);
	__atomic_add_fetch(&read->replies, 1, __ATOMIC_RELEASE);
}

static int reply_buf(void *req, const char *buf, size_t size)
{
	uint32_t value;

	if (size != sizeof(value)) {
		violation("read %td: a reply of %zu bytes",
			  (struct read *)req - reads, size);
		return 0;
	}
	memcpy(&value, buf, sizeof(value));
	record_reply(req, REPLY_COUNTER, value, 0);
	return 0;
}

static int reply_err(void *req, int err)
{
	record_reply(req, REPLY_ERR, 0, err);
	return 0;
}

static const struct vmgenid_reply_ops replies = {
	.buf = reply_buf,
	.err = reply_err,
};

/* A small per-thread generator: rand() shares its state. */
static unsigned int next_random(unsigned int *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 17;
	*state ^= *state << 5;
	return *state;
}

/* The GUID poll thread's, in turn. */
static const unsigned char guids[2][VMGENID_GUID_SIZE] = {
	"AAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBB"
};

static void *daemon_thread(void *arg)
{
	struct vmgenid_bump bump = { .minimum = -1 };
	struct vmgenid_changes changes = { .bumped_from = -1 };
	struct vmgenid_publisher *pub = arg;
	unsigned char guid[VMGENID_GUID_SIZE];
	struct vmgenid_publication report;
	uint32_t seen, counter;
	unsigned int i;
	int ret;

	for (i = 0; i < publications; i++) {
		/* The state machine's check before a transition. */
		seen = load_acquire(published);
		bump.kmsg_seq = i % 2 ? -1 : (int64_t)i;
		ret = vmgenid_publisher_bump(pub, st, &bump, &changes);
		vmgenid_changes_clear(&changes);
		if (ret)
			violation("bump() returned %d", ret);
		counter = vmgenid_state_counter(st);
		if (counter <= seen)
			violation("the state machine is at %" PRIu32 " after "
				  "a bump from %" PRIu32, counter, seen);
		if (i % 16 == 0) {
			ret = vmgenid_publisher_save(pub, -1);
			if (ret < 0)
				violation("save() returned %d", ret);
			/* The GUID the daemon reports: one of the thread's. */
			if (vmgenid_publisher_guid(pub, guid) &&
			    memcmp(guid, guids[0], VMGENID_GUID_SIZE) &&
			    memcmp(guid, guids[1], VMGENID_GUID_SIZE))
				violation("guid() gave a GUID never published");
		}
		if (!vmgenid_publisher_take(pub, &report))
			continue;
		if (report.counter != report.bumped_from + report.count)
			violation("a report from %" PRIu32 " to %" PRIu32
				  " counts %u publications",
				  report.bumped_from, report.counter,
				  report.count);
		if (report.statefile_err || report.page_result)
			violation("a report with statefile_err %d, page_result %d",
				  report.statefile_err, report.page_result);
		taken_count += report.count;
		taken_hardware += report.hardware;
		taken_replies += report.replies;
	}
	vmgenid_changes_free(&changes);
	return NULL;
}

static void *poll_thread(void *arg)
{
	struct vmgenid_publisher *pub = arg;
	unsigned int i;
	int ret;

	for (i = 0; i < publications; i++) {
		ret = vmgenid_publisher_hardware(pub, guids[i % 2], i % 3 == 0,
						 NULL);
		if (ret != 1)
			violation("hardware() returned %d on a new GUID", ret);
	}
	return NULL;
}

static void *register_thread(void *arg)
{
	struct vmgenid_publisher *pub = arg;
	unsigned int n = 0, rnd = 1;
	struct read *read;
	uint32_t now;
	int ret;

	while (!load_acquire(&publishers_done) && n < MAX_READS) {
		read = &reads[n];
		now = load_acquire(published);
		read->stale = now > START_COUNTER && next_random(&rnd) % 4 == 0;
		read->seen = read->stale ? now - 1 : now;
		ret = vmgenid_publisher_wait(pub, read, n, read->seen);
		if (ret < 0) {
			violation("wait() returned %d", ret);
			break;
		}
		read->registered = ret == 0;
		if (ret == 1 &&
		    __atomic_load_n(&read->replies, __ATOMIC_ACQUIRE) != 1)
			violation("read %u answered at once has no reply", n);
		if (read->stale && ret != 1)
			violation("read %u at a stale %" PRIu32 " waits", n,
				  read->seen);
		/* Its fields are the interrupt thread's to see from here. */
		store_release(&nr_reads, ++n);
		/* A few reads per publication, not thousands. */
		if (n % READS_PER_BUMP == 0)
			while (load_acquire(published) == now &&
			       !load_acquire(&publishers_done))
				sched_yield();
	}
	store_release(&registrations_done, 1);
	return NULL;
}

static void *interrupt_thread(void *arg)
{
	struct vmgenid_publisher *pub = arg;
	unsigned int n, token, rnd = 7;

	while (!load_acquire(&registrations_done)) {
		sched_yield();
		n = load_acquire(&nr_reads);
		if (!n)
			continue;
		token = n - 1 - next_random(&rnd) % (n < RECENT ? n : RECENT);
		if (vmgenid_publisher_cancel(pub, token, EINTR) == 1)
			__atomic_add_fetch(&cancelled, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

/* A client of the page: the counter is published before the page. */
static void *page_client_thread(void *arg)
{
	uint32_t page, counter, last = 0;

	(void)arg;
	while (!load_acquire(&registrations_done)) {
		sched_yield();
		page = load_acquire(page_map);
		counter = load_acquire(published);
		if (page > counter)
			violation("the page's %" PRIu32 " is ahead of the "
				  "counter %" PRIu32, page, counter);
		if (page < last)
			violation("the page went back from %" PRIu32 " to %"
				  PRIu32, last, page);
		last = page;
	}
	return NULL;
}

/* The reads' replies against the rules at the top of this file; the
 * replies by a publication counted in @by_publication. */
static void check_reads(unsigned int n, unsigned int aborted,
			unsigned int *by_publication)
{
	unsigned int i, eintr = 0, eshutdown = 0;
	uint32_t last_registered = 0;
	struct read *read;

	*by_publication = 0;
	for (i = 0; i < n; i++) {
		read = &reads[i];
		if (read->replies != 1) {
			violation("read %u got %u replies", i, read->replies);
			continue;
		}
		if (read->kind == REPLY_ERR) {
			if (read->err == EINTR)
				eintr++;
			else if (read->err == ESHUTDOWN)
				eshutdown++;
			else
				violation("read %u: error %d", i, read->err);
			if (!read->registered)
				violation("read %u answered at once got an "
					  "error", i);
			continue;
		}
		if (read->value <= read->seen)
			violation("read %u at %" PRIu32 " got %" PRIu32, i,
				  read->seen, read->value);
		if (!read->registered)
			continue;
		(*by_publication)++;
		if (read->value < last_registered)
			violation("read %u got %" PRIu32 ", after an earlier "
				  "one got %" PRIu32, i, read->value,
				  last_registered);
		last_registered = read->value;
	}
	if (eintr != cancelled)
		violation("%u reads got EINTR, %u cancels answered one", eintr,
			  cancelled);
	if (eshutdown != aborted)
		violation("%u reads got ESHUTDOWN, abort() answered %u",
			  eshutdown, aborted);
}

/* The counter of the state file in @dir_fd, or -1. */
static long long state_file_counter(int dir_fd)
{
	char text[512], *p;
	ssize_t len;
	int fd;

	fd = openat(dir_fd, STATE_NAME, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	len = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (len < 0)
		return -1;
	text[len] = '\0';
	p = strstr(text, "\"counter\": ");
	return p ? strtoll(p + strlen("\"counter\": "), NULL, 10) : -1;
}

static int make_page(int dir_fd, int *fd)
{
	*fd = openat(dir_fd, PAGE_NAME, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
		     0600);
	if (*fd < 0 || ftruncate(*fd, VMGENID_PAGE_SIZE))
		return -1;
	page_map = mmap(NULL, VMGENID_PAGE_SIZE, PROT_READ | PROT_WRITE,
			MAP_SHARED, *fd, 0);
	if (page_map == MAP_FAILED)
		return -1;
	*page_map = START_COUNTER;
	return 0;
}

/* A new folder in $TMPDIR (or /tmp): its path in @dir, its fd. */
static int make_dir(char *dir, size_t size)
{
	const char *tmp = getenv("TMPDIR");

	if (snprintf(dir, size, "%s/publisher-race.XXXXXX",
		     tmp && *tmp ? tmp : "/tmp") >= (int)size || !mkdtemp(dir))
		return -1;
	return open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

int main(int argc, char **argv)
{
	void *(*const workers[])(void *) = {
		register_thread, interrupt_thread, page_client_thread,
		daemon_thread, poll_thread,
	};
	enum { NR_WORKERS = sizeof(workers) / sizeof(workers[0]) };
	pthread_t threads[NR_WORKERS];
	struct vmgenid_statefile *statefile;
	struct vmgenid_publisher *pub;
	struct vmgenid_publication report;
	struct vmgenid_page *page;
	unsigned int i, n, waited, aborted, by_publication;
	uint32_t final, expected;
	long long in_file;
	int dir_fd, page_fd;
	char dir[4096];

	if (argc > 1)
		publications = strtoul(argv[1], NULL, 0);
	dir_fd = make_dir(dir, sizeof(dir));
	if (dir_fd < 0 || make_page(dir_fd, &page_fd)) {
		perror("publisher-race: the page's folder");
		return 1;
	}
	statefile = vmgenid_statefile_open(dir_fd, STATE_NAME, STATE_TMP,
					   "00000000-0000-4000-8000-000000000000");
	page = vmgenid_page_new(page_fd, page_map);
	pub = statefile && page ?
		vmgenid_publisher_new(statefile, page, NULL, &replies, -1,
				      START_COUNTER, -1) : NULL;
	if (!pub || vmgenid_statefile_prepare(statefile)) {
		perror("publisher-race: the publisher");
		return 1;
	}
	published = vmgenid_publisher_counter(pub);
	st = vmgenid_state_new(START_COUNTER, 1024,
			       vmgenid_publisher_published, pub);
	if (!st) {
		perror("publisher-race: the state machine");
		return 1;
	}

	for (i = 0; i < NR_WORKERS; i++)
		pthread_create(&threads[i], NULL, workers[i], pub);
	/* The publishers first, then the registrations, then the rest. */
	pthread_join(threads[NR_WORKERS - 1], NULL);
	pthread_join(threads[NR_WORKERS - 2], NULL);
	store_release(&publishers_done, 1);
	for (i = 0; i < NR_WORKERS - 2; i++)
		pthread_join(threads[i], NULL);

	n = nr_reads;
	aborted = vmgenid_publisher_abort(pub, ESHUTDOWN);
	check_reads(n, aborted, &by_publication);
	if (vmgenid_publisher_take(pub, &report)) {
		taken_count += report.count;
		taken_hardware += report.hardware;
		taken_replies += report.replies;
	}
	expected = START_COUNTER + 2 * publications;
	final = vmgenid_publisher_settle(pub);
	in_file = state_file_counter(dir_fd);
	if (final != expected || *page_map != expected || in_file != expected)
		violation("the counter ends at %" PRIu32 ", the page at %"
			  PRIu32 ", the state file at %lld, not %" PRIu32,
			  final, *page_map, in_file, expected);
	if (taken_count != 2 * publications ||
	    taken_hardware != publications)
		violation("the reports count %u publications, %u hardware",
			  taken_count, taken_hardware);
	if (taken_replies != by_publication)
		violation("the reports count %u replies, the reads %u",
			  taken_replies, by_publication);
	for (i = 0, waited = 0; i < n; i++)
		waited += reads[i].registered;
	printf("reads=%u waited=%u by_publication=%u cancelled=%u "
	       "aborted=%u publications=%u violations=%u\n", n,
	       waited, by_publication, cancelled, aborted, taken_count,
	       violations);

	vmgenid_state_free(st);
	vmgenid_publisher_free(pub);
	vmgenid_page_free(page);
	vmgenid_statefile_close(statefile);
	munmap(page_map, VMGENID_PAGE_SIZE);
	close(page_fd);
	unlinkat(dir_fd, STATE_NAME, 0);
	unlinkat(dir_fd, PAGE_NAME, 0);
	close(dir_fd);
	rmdir(dir);
	return violations ? 1 : 0;
}
