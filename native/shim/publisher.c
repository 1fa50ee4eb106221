// SPDX-License-Identifier: MIT
/*
 * The publisher: the one path of every bump, in the order of
 * docs/interface.rst, "The page": for a change of the hardware generation
 * that the kernel did not reseed its RNG for, that reseed (the one home of
 * the daemon's reseeds); then the state file (write, fsync, rename),
 * then the page's atomic store (and the VMClock-ABI page's, if the daemon
 * keeps one), then a reply to every blocked read.  The daemon's own bumps
 * (FORCE, FORCE_MIN, NOTIFY, SIGUSR1, a restart, a kernel log record) and
 * the GUID poll thread's come through here, under one lock.
 *
 * Right after a restore under emulation every code path run for the first
 * time costs milliseconds, and the daemon's Python path from its wake-up
 * to the replies was slower than the kernel's own reaction
 * (docs/benchmarks.rst has the figures).  So the thread publishes a new GUID the moment it sees it, without
 * waiting for the interpreter, and the replies to 1,000 readers are 1,000
 * calls from C, not from Python.
 *
 * The state machine (state.c) stays the only truth for the counter: the
 * daemon's bump asks it for the next value and publishes it here only if
 * nothing was published since (vmgenid_publisher_bump() compares the
 * counter it started from), and every transition of the state machine
 * first adopts what was published (vmgenid_publisher_published(): the
 * counter, and the lock to wait out a publication under way).
 *
 * Blocked reads are registered here only (vmgenid_publisher_wait()), with
 * the counter the state machine decided they wait at: one registered
 * after a publication is answered at once.  A read is answered once: by a
 * publication, or by vmgenid_publisher_cancel() (a signal), or
 * vmgenid_publisher_abort() (the end), whichever unlinks it under the lock.
 * Pollers and WAIT_WATCHERS callers are the daemon's to wake (see
 * docs/design.rst, "One publisher").
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/ioctl.h>
#include <linux/random.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#include <x86intrin.h>
#endif

#include "guid.h"
#include "page.h"
#include "publisher.h"
#include "state.h"
#include "statefile.h"
#ifdef VMGENID_TESTING
#include "testing.h"
#endif
#include "vmclock.h"

struct vmgenid_blocked_read {
	struct vmgenid_blocked_read *prev, *next;
	void *req;
	uint64_t token;
};

struct vmgenid_publisher {
	pthread_mutex_t lock;
	struct vmgenid_statefile *statefile;
	struct vmgenid_page *page;
	struct vmgenid_page *vmclock;	/* the VMClock-ABI page, or NULL */
	const struct vmgenid_reply_ops *replies;
	int rng_fd;			/* /dev/urandom, or -1 */
	uint32_t counter;		/* published: loaded without the lock */
	uint32_t settled;		/* vmgenid_publisher_published()'s */
	unsigned char guid[VMGENID_GUID_SIZE];	/* the last one published */
	int has_guid;
	int64_t kmsg_seq;		/* the last kernel record applied, or -1 */
	struct vmgenid_blocked_read reads;	/* list head */
	struct vmgenid_publication report;	/* since the last take */
};

struct vmgenid_publisher *
vmgenid_publisher_new(struct vmgenid_statefile *statefile,
		      struct vmgenid_page *page, struct vmgenid_page *vmclock,
		      const struct vmgenid_reply_ops *replies, int rng_fd,
		      uint32_t counter, int64_t kmsg_seq)
{
	struct vmgenid_publisher *pub = calloc(1, sizeof(*pub));

	if (!pub)
		return NULL;
	pthread_mutex_init(&pub->lock, NULL);
	pub->statefile = statefile;
	pub->page = page;
	pub->vmclock = vmclock;
	pub->replies = replies;
	pub->rng_fd = rng_fd;
	pub->counter = counter;
	pub->settled = counter;
	pub->kmsg_seq = kmsg_seq;
	pub->reads.prev = &pub->reads;
	pub->reads.next = &pub->reads;
	return pub;
}

/* After the GUID poll thread is gone and every read was answered. */
void vmgenid_publisher_free(struct vmgenid_publisher *pub)
{
	pthread_mutex_destroy(&pub->lock);
	free(pub);
}

/* The GUID a later vmgenid_publisher_hardware() compares with (NULL:
 * none known, so any GUID is a change). */
void vmgenid_publisher_set_guid(struct vmgenid_publisher *pub,
				const void *guid)
{
	pthread_mutex_lock(&pub->lock);
	pub->has_guid = guid != NULL;
	if (guid)
		memcpy(pub->guid, guid, VMGENID_GUID_SIZE);
	pthread_mutex_unlock(&pub->lock);
}

/* 1 and the last GUID published in @out, or 0 if none is known. */
int vmgenid_publisher_guid(struct vmgenid_publisher *pub, void *out)
{
	int has;

	pthread_mutex_lock(&pub->lock);
	has = pub->has_guid;
	if (has)
		memcpy(out, pub->guid, VMGENID_GUID_SIZE);
	pthread_mutex_unlock(&pub->lock);
	return has;
}

#ifdef VMGENID_TESTING
/*
 * Where the published counter is, for a reader that loads it without the
 * lock (native/tests/publisher-race.c).  It changes before the page does,
 * so a request sent after its sender saw the new value finds it changed;
 * vmgenid_publisher_settle() then waits for the rest.
 */
const uint32_t *vmgenid_publisher_counter(struct vmgenid_publisher *pub)
{
	return &pub->counter;
}
#endif

/* The published counter, once no publication is under way. */
uint32_t vmgenid_publisher_settle(struct vmgenid_publisher *pub)
{
	uint32_t counter;

	pthread_mutex_lock(&pub->lock);
	counter = pub->counter;
	pthread_mutex_unlock(&pub->lock);
	return counter;
}

/*
 * What the state machine adopts before each transition (state.c's published
 * fn, called under its lock, so @settled is that lock's): one load, and
 * the publisher's lock only when it changed.
 */
uint32_t vmgenid_publisher_published(void *ctx)
{
	struct vmgenid_publisher *pub = ctx;
	uint32_t counter = __atomic_load_n(&pub->counter, __ATOMIC_ACQUIRE);

	if (counter != pub->settled)
		counter = pub->settled = vmgenid_publisher_settle(pub);
	return counter;
}

static unsigned int us_since(const struct timespec *then)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - then->tv_sec) * 1000000 +
	       (now.tv_nsec - then->tv_nsec) / 1000;
}

/*
 * The counter's one store, under the lock, that the state machine loads
 * without it (vmgenid_publisher_published()).  Its own function: Helgrind,
 * which does not model atomics, is told of it by name
 * (native/tests/publisher-race.supp).
 */
static void counter_store(struct vmgenid_publisher *pub, uint32_t to)
{
	__atomic_store_n(&pub->counter, to, __ATOMIC_RELEASE);
}

static void read_unlink(struct vmgenid_blocked_read *read)
{
	read->prev->next = read->next;
	read->next->prev = read->prev;
	read->prev = read->next = read;
}

/* The state file's "guid": the last GUID published, spelled in @text, or
 * NULL if none is known. */
static const char *guid_text_locked(const struct vmgenid_publisher *pub,
				    char *text)
{
	if (!pub->has_guid)
		return NULL;
	vmgenid_guid_format(pub->guid, text);
	return text;
}

/*
 * Publish @to: the order of docs/interface.rst.  A failed commit does not
 * stop it: a missed wake-up is worse than a stale file (the daemon reports
 * it, and the next commit writes the file whole).
 */
static void publish_locked(struct vmgenid_publisher *pub, uint32_t to,
			   const struct timespec *start)
{
	struct vmgenid_publication *report = &pub->report;
	struct vmgenid_blocked_read *read;
	char text[VMGENID_GUID_TEXT + 1];
	const char *guid = guid_text_locked(pub, text);
	int ret;

	if (!report->count)
		report->bumped_from = pub->counter;
	ret = vmgenid_statefile_save(pub->statefile, to, guid, pub->kmsg_seq);
	report->statefile_err = ret < 0 ? ret : 0;
	report->committed_us = us_since(start);
	/* Before anyone can see the value: see vmgenid_publisher_published(). */
	counter_store(pub, to);
	report->page_result = vmgenid_page_store(pub->page, to);
	if (pub->vmclock)
		vmgenid_page_write(pub->vmclock, vmgenid_vmclock_store, to,
				   NULL);
	while (pub->reads.next != &pub->reads) {
		read = pub->reads.next;
		read_unlink(read);
		pub->replies->buf(read->req, (const char *)&to, sizeof(to));
		free(read);
		report->replies++;
	}
	report->replied_us = us_since(start);
	report->counter = to;
	report->count++;
	/* Off the wake-ups' path: the next commit only overwrites bytes. */
	vmgenid_statefile_prepare(pub->statefile);
	if (to < UINT32_MAX)
		vmgenid_statefile_stage(pub->statefile, to + 1, guid,
					pub->kmsg_seq);
}

/*
 * Mix @size bytes of @seed into the kernel RNG and reseed its crng now:
 * a write to /dev/urandom only feeds the input pool, which the crng draws
 * from at its next reseed; RNDRESEEDCRNG (CAP_SYS_ADMIN) is that reseed.
 * The report keeps the error (-errno) if it failed.
 */
static void reseed_rng_locked(struct vmgenid_publisher *pub,
			      const void *seed, size_t size)
{
	ssize_t n = write(pub->rng_fd, seed, size);

	if (n != (ssize_t)size)
		pub->report.reseed_err = n < 0 ? -errno : -EIO;
	else if (ioctl(pub->rng_fd, RNDRESEEDCRNG) < 0)
		pub->report.reseed_err = -errno;
}

#if defined(__x86_64__) || defined(__i386__)
/* Intel's advice: RDRAND fails only transiently; give up after 10. */
#define CPU_RANDOM_RETRIES 10

__attribute__((target("rdseed")))
static int cpu_rdseed(unsigned int *out)
{
	int i;

	for (i = 0; i < CPU_RANDOM_RETRIES; i++)
		if (_rdseed32_step(out))
			return 1;
	return 0;
}

__attribute__((target("rdrnd")))
static int cpu_rdrand(unsigned int *out)
{
	int i;

	for (i = 0; i < CPU_RANDOM_RETRIES; i++)
		if (_rdrand32_step(out))
			return 1;
	return 0;
}

/*
 * Fill @words from the CPU's own random source: RDSEED (the conditioned
 * entropy), else RDRAND, for each word; as many as it gave.  A clone's
 * CPU state is a copy, but these instructions draw from the hardware of
 * the host it runs on now: they differ between clones.
 */
static unsigned int cpu_random(unsigned int *words, unsigned int n)
{
	unsigned int a, b, c, d, got = 0;
	int rdrand = 0, rdseed = 0;

	if (__get_cpuid(1, &a, &b, &c, &d))
		rdrand = !!(c & bit_RDRND);
	if (__get_cpuid_count(7, 0, &a, &b, &c, &d))
		rdseed = !!(b & bit_RDSEED);
	while (got < n && ((rdseed && cpu_rdseed(&words[got])) ||
			   (rdrand && cpu_rdrand(&words[got]))))
		got++;
	return got;
}

static uint64_t cpu_cycles(void)
{
	return __rdtsc();
}
#else
static unsigned int cpu_random(unsigned int *words, unsigned int n)
{
	(void)words;
	(void)n;
	return 0;
}

static uint64_t cpu_cycles(void)
{
	return 0;
}
#endif

/* 256 bits from the CPU where it has a random source. */
#define CPU_RANDOM_WORDS 8

/*
 * What a change without a GUID mixes into the kernel RNG: the CPU's random
 * words, the hypervisor's new generation counter, the daemon's new
 * counter, the cycle counter and the clocks at nanosecond resolution.
 * Clones of one snapshot share everything else, the RNG's state included.
 */
struct vmgenid_reseed {
	unsigned int cpu[CPU_RANDOM_WORDS];
	uint64_t generation;
	uint32_t counter;
	uint32_t cpu_words;		/* of cpu[] filled */
	uint64_t cycles;
	struct timespec monotonic, realtime, boottime;
};

static void reseed_from_cpu_locked(struct vmgenid_publisher *pub,
				   uint64_t generation, uint32_t counter)
{
	struct vmgenid_reseed seed;

	memset(&seed, 0, sizeof(seed));
	seed.cpu_words = cpu_random(seed.cpu, CPU_RANDOM_WORDS);
	seed.generation = generation;
	seed.counter = counter;
	seed.cycles = cpu_cycles();
	clock_gettime(CLOCK_MONOTONIC_RAW, &seed.monotonic);
	clock_gettime(CLOCK_REALTIME, &seed.realtime);
	clock_gettime(CLOCK_BOOTTIME, &seed.boottime);
	pub->report.reseeds++;
	pub->report.reseed_cpu_words = seed.cpu_words;
	reseed_rng_locked(pub, &seed, sizeof(seed));
}

/*
 * Publish @to if the counter is still @from (the state machine's, when it
 * chose @to); @kmsg_seq, if not -1, is the kernel record it applies;
 * @generation, if not NULL, the hypervisor's counter of a change the
 * kernel did not reseed for: the RNG is reseeded first.  0, or -EAGAIN if
 * something was published since @from.
 */
static int publish_from(struct vmgenid_publisher *pub, uint32_t from,
			uint32_t to, int64_t kmsg_seq,
			const uint64_t *generation)
{
	struct timespec start;

	clock_gettime(CLOCK_MONOTONIC, &start);
	pthread_mutex_lock(&pub->lock);
	if (pub->counter != from) {
		pthread_mutex_unlock(&pub->lock);
		return -EAGAIN;
	}
	if (kmsg_seq >= 0)
		pub->kmsg_seq = kmsg_seq;
	if (generation && pub->rng_fd >= 0)
		reseed_from_cpu_locked(pub, *generation, to);
	publish_locked(pub, to, &start);
	pthread_mutex_unlock(&pub->lock);
	return 0;
}

/*
 * The daemon's bump, whole: the state machine @st chooses the counter
 * (counter + 1, or @minimum for FORCE_GEN_UPDATE_MIN; -1: none), which is
 * published only if nothing was published since the choice; if the GUID
 * poll thread published in between, the state machine adopts that and
 * chooses again, so this bump gets a generation of its own.  Then @st
 * adopts it: what that owes (EINTR to WAIT_WATCHERS callers, poll
 * wake-ups) is appended to @changes, for the caller to send.
 *
 * @bump->kmsg_seq (-1: none): the kernel record it applies.
 * @bump->reseed: a hardware change the kernel did not reseed its RNG for
 * (VMClock: ptp_vmclock has no reseed of its own), @bump->generation the
 * hypervisor's counter now: before anyone wakes, the kernel RNG is fed
 * what differs between clones (struct vmgenid_reseed) and its crng
 * reseeded, as the GUID tier does with the GUID.
 *
 * 0, or -EOVERFLOW (no counter left: nothing published), or -ENOMEM
 * (from the adoption: the bump is published, what it owes stays owed to
 * the next transition that hands it over).
 */
int vmgenid_publisher_bump(struct vmgenid_publisher *pub,
			   struct vmgenid_state *st,
			   const struct vmgenid_bump *bump,
			   struct vmgenid_changes *changes)
{
	uint32_t from, to;
	int ret;

	do {
		ret = vmgenid_state_plan_bump(st, bump->minimum, &from, &to);
		if (ret)
			return ret;
		ret = publish_from(pub, from, to, bump->kmsg_seq,
				   bump->reseed ? &bump->generation : NULL);
	} while (ret == -EAGAIN);
	return vmgenid_state_adopt(st, changes);
}

/*
 * The hardware generation now: the GUID at @guid (the hypervisor's page,
 * live), loaded here under the lock and compared with the last one
 * published: one bump per new GUID, whoever looks first.  Loaded here,
 * not by the caller: a caller's copy may be older than what another
 * published meanwhile (a restore can fall between a read and its
 * hand-over), and would count the old GUID as new.  Before anyone wakes,
 * the new GUID is mixed into the kernel RNG and the crng reseeded (the
 * seed's add_device_randomness): two clones of one snapshot share the
 * RNG's state, and a woken reader's first draw must differ.  Not if
 * @kernel_reseeded: the kernel's own driver did (its log line said so).
 * @woke: when the caller woke (NULL: now).  1 if it published, 0 if the
 * GUID is the one published, -EOVERFLOW at the counter's end.
 */
int vmgenid_publisher_hardware(struct vmgenid_publisher *pub,
			       const void *guid, int kernel_reseeded,
			       const struct timespec *woke)
{
	unsigned char now[VMGENID_GUID_SIZE];
	struct timespec start;

	if (!woke) {
		clock_gettime(CLOCK_MONOTONIC, &start);
		woke = &start;
	}
	pthread_mutex_lock(&pub->lock);
	vmgenid_guid_load(now, guid);
	if (pub->has_guid && !memcmp(pub->guid, now, VMGENID_GUID_SIZE)) {
		pthread_mutex_unlock(&pub->lock);
		return 0;
	}
	if (pub->counter == UINT32_MAX) {
		pthread_mutex_unlock(&pub->lock);
		return -EOVERFLOW;
	}
	if (!kernel_reseeded && pub->rng_fd >= 0)
		reseed_rng_locked(pub, now, VMGENID_GUID_SIZE);
	memcpy(pub->guid, now, VMGENID_GUID_SIZE);
	pub->has_guid = 1;
	publish_locked(pub, pub->counter + 1, woke);
	pub->report.hardware++;
	pub->report.kernel_log |= kernel_reseeded;
	pthread_mutex_unlock(&pub->lock);
	return 1;
}

/*
 * The kernel-log tier's change: the kernel record @seq (@lost: records
 * before it were lost unread; one may have been a change).  No GUID to
 * compare: the kernel compared before it logged, and reseeded its RNG.
 * @woke: when the caller woke.  1 if it published, -EOVERFLOW at the
 * counter's end.
 */
int vmgenid_publisher_record(struct vmgenid_publisher *pub, int64_t seq,
			     int lost, const struct timespec *woke)
{
	pthread_mutex_lock(&pub->lock);
	pub->kmsg_seq = seq;
	if (pub->counter == UINT32_MAX) {
		pthread_mutex_unlock(&pub->lock);
		return -EOVERFLOW;
	}
	publish_locked(pub, pub->counter + 1, woke);
	pub->report.hardware++;
	pub->report.records++;
	pub->report.lost |= lost;
	pub->report.kernel_log |= !lost;
	pub->report.kmsg_seq = seq;
	pthread_mutex_unlock(&pub->lock);
	return 1;
}

/* The state file with what is published, and @kmsg_seq if not -1 (the
 * kernel-log tier's records read, at start and at the end). */
int vmgenid_publisher_save(struct vmgenid_publisher *pub, int64_t kmsg_seq)
{
	char text[VMGENID_GUID_TEXT + 1];
	int ret;

	pthread_mutex_lock(&pub->lock);
	if (kmsg_seq >= 0)
		pub->kmsg_seq = kmsg_seq;
	ret = vmgenid_statefile_save(pub->statefile, pub->counter,
				     guid_text_locked(pub, text), pub->kmsg_seq);
	pthread_mutex_unlock(&pub->lock);
	return ret;
}

/* 1 and the publications since the last take in @out; 0 if none. */
int vmgenid_publisher_take(struct vmgenid_publisher *pub,
			   struct vmgenid_publication *out)
{
	int some;

	pthread_mutex_lock(&pub->lock);
	some = pub->report.count > 0;
	if (some) {
		*out = pub->report;
		memset(&pub->report, 0, sizeof(pub->report));
	}
	pthread_mutex_unlock(&pub->lock);
	return some;
}

/*
 * A read blocks: the state machine found its watcher up to date with
 * @seen.  0 if registered; 1 if answered now (something newer was
 * published since); -ENOMEM.
 */
int vmgenid_publisher_wait(struct vmgenid_publisher *pub, void *req,
			   uint64_t token, uint32_t seen)
{
	struct vmgenid_blocked_read *read = malloc(sizeof(*read));
	uint32_t counter;

	if (!read)
		return -ENOMEM;
	read->req = req;
	read->token = token;
	pthread_mutex_lock(&pub->lock);
	counter = pub->counter;
	if (counter == seen) {
		read->prev = pub->reads.prev;
		read->next = &pub->reads;
		pub->reads.prev->next = read;
		pub->reads.prev = read;
	}
	pthread_mutex_unlock(&pub->lock);
	if (counter == seen)
		return 0;
	free(read);
	pub->replies->buf(req, (const char *)&counter, sizeof(counter));
	return 1;
}

/* Answer the read registered as @token with @err (a signal: EINTR): 1, or
 * 0 if no read waits as @token (a publication answered it). */
int vmgenid_publisher_cancel(struct vmgenid_publisher *pub, uint64_t token,
			     int err)
{
	struct vmgenid_blocked_read *read;

	pthread_mutex_lock(&pub->lock);
	for (read = pub->reads.next; read != &pub->reads; read = read->next)
		if (read->token == token)
			break;
	if (read == &pub->reads) {
		pthread_mutex_unlock(&pub->lock);
		return 0;
	}
	read_unlink(read);
	pthread_mutex_unlock(&pub->lock);
	pub->replies->err(read->req, err);
	free(read);
	return 1;
}

/* Answer every registered read with @err (the end); how many. */
unsigned int vmgenid_publisher_abort(struct vmgenid_publisher *pub, int err)
{
	struct vmgenid_blocked_read *read;
	unsigned int n = 0;

	pthread_mutex_lock(&pub->lock);
	while (pub->reads.next != &pub->reads) {
		read = pub->reads.next;
		read_unlink(read);
		pub->replies->err(read->req, err);
		free(read);
		n++;
	}
	pthread_mutex_unlock(&pub->lock);
	return n;
}
