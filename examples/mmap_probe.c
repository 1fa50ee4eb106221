// SPDX-License-Identifier: GPL-2.0+
/*
 * mmap_probe - the seed's example 3: a cached secret guarded by the counter
 * in mapped memory.
 *
 *	LD_PRELOAD=libvmgenid-mmap.so mmap_probe [-n COUNT]
 *
 *	-n COUNT	exit after COUNT generation changes were handled
 *			(acknowledged); 0, the default, runs until killed
 *
 * The program maps /dev/vmgenid (one page, PROT_READ, MAP_SHARED; its
 * first 4 bytes are the counter) and uses its cached secret in a loop.
 * Each use compares the mapped counter with the one the cache was built
 * for: no system call on the fast path.  On a difference it rebuilds the
 * cache and acknowledges the new counter through write() on the same
 * descriptor, so VMGENID_WAIT_WATCHERS callers stop waiting for it.
 *
 * CUSE devices cannot be mapped (the kernel answers ENODEV): run it with
 * native/build/libvmgenid-mmap.so preloaded, which maps the daemon's page
 * instead (VMGENID_PAGE names the page if it is not /run/vmgenid/page).
 *
 * Output (stdout, one line each):
 *	ready				mapped, cache built for the current
 *					counter; probing from now on
 *	change: generation N		the mapped counter became N
 *	reseed: <why>, secret <hex>	the cache was rebuilt
 *	ack: generation N		write() acknowledged N
 *	ack: generation N superseded	EINVAL: changed again since; the
 *					next probe sees the newer value
 *	device: <ERRNO>			an error from the device (client rule)
 *	reopen: ok			a new descriptor (the mapping stays:
 *					the page outlives daemon restarts)
 *
 * Client rule (docs/interface.rst): EINTR and EAGAIN mean "try
 * again", EINVAL means "the counter moved on"; any other error means the
 * daemon went away and a change may have happened: reseed, then reopen.
 *
 * Exit: 0 after COUNT changes, 1 on an error (mmap failing included),
 * 64 with the usage line on stderr for an unknown option, an operand, or
 * a COUNT that is not a decimal number of 0 or more.
 */
#define _GNU_SOURCE		/* strerrorname_np */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <linux/vmgenid.h>

#include "client.h"

#define VMGENID_MAP_SIZE	4096
#define SECRET_SIZE		16
#define WORK_INTERVAL_MS	20	/* the application's work between uses */

#define unlikely(x)		__builtin_expect(!!(x), 0)

typedef struct {
	int fd;					/* /dev/vmgenid, O_RDWR */
	volatile unsigned int *genid_map;	/* its mapping */
	unsigned int cached_genid;		/* the cache was built for it */
	char secret[2 * SECRET_SIZE + 1];	/* the cache: hex */
	unsigned long changes;			/* acknowledged so far */
} app_data_t;

static volatile unsigned int *get_vmgenid_mapping(app_data_t *app)
{
	return app->genid_map;
}

static char *__cached_secret(app_data_t *app)
{
	return app->secret;
}

/* Because of a VM generation change, rebuild the world (the cache). */
static void rebuild_caches(app_data_t *app, const char *why)
{
	unsigned char raw[SECRET_SIZE];
	int i;

	if (getrandom(raw, sizeof(raw), 0) != sizeof(raw)) {
		perror("getrandom");
		exit(1);
	}
	for (i = 0; i < SECRET_SIZE; i++)
		sprintf(app->secret + 2 * i, "%02x", raw[i]);
	printf("reseed: %s, secret %s\n", why, app->secret);
}

/* Open the device, waiting (not spinning) while the daemon is away. */
static int open_vmgenid(void)
{
	return open_vmgenid_flags(0);
}

/*
 * The client rule: the daemon went away (err), a change may have happened.
 * Rebuild at once, then reopen.  No second rebuild after the reopen (the
 * other examples need one): the mapping stays valid, and a change made
 * while the daemon was down shows in it (a restart bumps when the GUID
 * changed), so the next probe sees it and acknowledges on the new
 * descriptor.
 */
static void device_lost(app_data_t *app, int err)
{
	char why[48];

	rebuild_caches(app, report_device_error(err, why, sizeof(why)));
	close(app->fd);
	app->fd = open_vmgenid();
	if (app->fd < 0) {
		printf("reopen: %s\n", ename(errno));
		exit(1);
	}
	printf("reopen: ok\n");
}

/* Confirm app->cached_genid through write(). */
static void ack_vmgenid_update(app_data_t *app)
{
	unsigned int genid = app->cached_genid;
	ssize_t n;

	do
		n = write(app->fd, &genid, sizeof(genid));
	while (n < 0 && (errno == EINTR || errno == EAGAIN));

	if (n == sizeof(genid)) {
		printf("ack: generation %u\n", genid);
		app->changes++;
	} else if (n < 0 && errno == EINVAL) {
		/* Changed again: the mapping already shows the newer value. */
		printf("ack: generation %u superseded\n", genid);
	} else {
		device_lost(app, n < 0 ? errno : EIO);
	}
}

/*
 * app/library function that provides cached secrets
 */
static char *safe_cached_secret(app_data_t *app)
{
	char *secret;
	volatile unsigned int *const genid_ptr = get_vmgenid_mapping(app);
	unsigned int genid;
	char why[32];
again:
	secret = __cached_secret(app);

	genid = *genid_ptr;
	if (unlikely(genid != app->cached_genid)) {
		/*
		 * The seed re-read *genid_ptr after rebuild_caches(); the
		 * review found that racy: a change during the rebuild would
		 * be recorded (and acknowledged) as handled by a rebuild that
		 * started before it.  Read the genid before the rebuild and
		 * record that value: a change during the rebuild makes the
		 * next probe differ again.
		 */
		printf("change: generation %u\n", genid);

		// rebuild world then confirm the genid update (thru write)
		snprintf(why, sizeof(why), "generation %u", genid);
		rebuild_caches(app, why);

		app->cached_genid = genid;
		ack_vmgenid_update(app);

		goto again;
	}

	return secret;
}

int main(int argc, char **argv)
{
	unsigned long max_changes = 0;
	app_data_t app;
	void *map;

	setvbuf(stdout, NULL, _IOLBF, 0);

	if (parse_count_args(argc, argv, "mmap_probe", &max_changes))
		return EXIT_USAGE;

	memset(&app, 0, sizeof(app));
	app.fd = open(VMGENID_DEV, O_RDWR | O_CLOEXEC);
	if (app.fd < 0) {
		printf("open: %s\n", ename(errno));
		return 1;
	}
	map = mmap(NULL, VMGENID_MAP_SIZE, PROT_READ, MAP_SHARED, app.fd, 0);
	if (map == MAP_FAILED) {
		printf("mmap: %s%s\n", ename(errno), errno == ENODEV ?
		       " (CUSE has no mmap: preload libvmgenid-mmap.so)" : "");
		return 1;
	}
	app.genid_map = map;

	/*
	 * Build the cache for the counter as mapped now.  The descriptor was
	 * opened up to date, before this load: if a change came in between,
	 * the cache is built for it already, and this write() acknowledges
	 * it (on an up-to-date descriptor it changes nothing).  EINVAL: a
	 * change after the load, which the first probe sees.
	 */
	app.cached_genid = *app.genid_map;
	rebuild_caches(&app, "start");
	if (write(app.fd, &app.cached_genid, sizeof(app.cached_genid)) < 0 &&
	    errno != EINVAL) {
		printf("write: %s\n", ename(errno));
		return 1;
	}
	printf("ready\n");

	while (!max_changes || app.changes < max_changes) {
		const char *secret = safe_cached_secret(&app);

		/* ... use the secret, then do other work ... */
		(void)secret;
		sleep_ms(WORK_INTERVAL_MS);
	}

	munmap(map, VMGENID_MAP_SIZE);
	close(app.fd);
	return 0;
}
