// SPDX-License-Identifier: MIT
/*
 * vmgenid-map [-d DEV] [-l LEN] [-o OFF] [-w] [-p] [-r] [-6] [-M] [-s]
 *	       [-b] [-f] [-i]
 *
 * Opens DEV (default /dev/vmgenid) and mmap()s it, PROT_READ MAP_SHARED
 * 4096 bytes at offset 0 unless told otherwise.  A CUSE device has no
 * mmap (ENODEV); run it with LD_PRELOAD=libvmgenid-mmap.so (and
 * VMGENID_PAGE=<page>) to get the page.
 *
 *	-d DEV	file to open
 *	-l LEN	mmap length
 *	-o OFF	mmap offset
 *	-w	PROT_READ | PROT_WRITE
 *	-p	MAP_PRIVATE instead of MAP_SHARED
 *	-r	open O_RDONLY (default O_RDWR)
 *	-6	call mmap64() instead of mmap()
 *	-M	after mapping, mprotect(PROT_READ | PROT_WRITE) it
 *	-s	after mapping, store into its first word (expected: SIGSEGV)
 *	-b	after mapping, read() DEV once (blocks while up to date), then
 *		load the mapping at once
 *	-f	after mapping, fork: the child goes on (-M, -s, -b, -i), the
 *		parent waits for it and exits with its status
 *	-i	then read commands from stdin, one per line, until EOF:
 *		"v" prints the mapped value again, "m" maps DEV once more
 *		(the same options; the old mapping stays)
 *
 * Output lines (stdout, line-buffered); value is the mapping's first u32:
 *	open errno=<ENAME>			(then exit 2)
 *	map ok value=<u32>  |  map errno=<ENAME>
 *	mprotect ret=<n> errno=<ENAME or 0>	(-M)
 *	store ok				(-s: the store did not fault)
 *	read ret=<n> value=<u32> mapped=<u32> errno=<ENAME or 0>	(-b)
 *	child					(-f, from the child)
 *	value=<u32>				(-i, "v")
 * Exit: 0 if the map (and the -b read) succeeded, 1 otherwise, 2 if open
 * failed, 3 if the -s store did not fault, 64 on a usage error; with -f,
 * the child's status (a signal that killed the child kills the parent).
 */
#define _GNU_SOURCE		/* strerrorname_np, mmap64 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "errname.h"

#define EXIT_USAGE	64

struct opts {
	size_t len;
	long long off;
	int prot;
	int flags;
	int use64;
};

static void usage(void)
{
	fprintf(stderr,
		"usage: vmgenid-map [-d DEV] [-l LEN] [-o OFF] [-w] [-p] [-r] "
		"[-6] [-M] [-s] [-b] [-f] [-i]\n");
	exit(EXIT_USAGE);
}

static unsigned long long number(const char *s)
{
	unsigned long long n;
	char *end;

	errno = 0;
	n = strtoull(s, &end, 0);
	if (errno || !*s || *end || *s == '-')
		usage();
	return n;
}

static uint32_t load(const void *p)
{
	return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
}

/* Prints the map line; returns the mapping or NULL. */
static void *map(const struct opts *o, int fd)
{
	void *p;

	if (o->use64)
		p = mmap64(NULL, o->len, o->prot, o->flags, fd, o->off);
	else
		p = mmap(NULL, o->len, o->prot, o->flags, fd, (off_t)o->off);
	if (p == MAP_FAILED) {
		printf("map errno=%s\n", errname(errno));
		return NULL;
	}
	printf("map ok value=%u\n", load(p));
	return p;
}

static void commands(const struct opts *o, int fd, void *p)
{
	char line[64];

	while (fgets(line, sizeof(line), stdin)) {
		if (line[0] == 'v')
			printf("value=%u\n", load(p));
		else if (line[0] == 'm')
			map(o, fd);
	}
}

int main(int argc, char **argv)
{
	const char *dev = "/dev/vmgenid";
	struct opts o = {
		.len = 4096, .off = 0, .prot = PROT_READ, .flags = MAP_SHARED,
	};
	int oflags = O_RDWR;
	int do_mprotect = 0, store = 0, block = 0, do_fork = 0, loop = 0;
	int fd, opt, ok = 1;
	void *p;

	setvbuf(stdout, NULL, _IOLBF, 0);

	while ((opt = getopt(argc, argv, "d:l:o:wpr6Msbfi")) != -1) {
		switch (opt) {
		case 'd':
			dev = optarg;
			break;
		case 'l':
			o.len = number(optarg);
			break;
		case 'o':
			o.off = (long long)number(optarg);
			break;
		case 'w':
			o.prot |= PROT_WRITE;
			break;
		case 'p':
			o.flags = MAP_PRIVATE;
			break;
		case 'r':
			oflags = O_RDONLY;
			break;
		case '6':
			o.use64 = 1;
			break;
		case 'M':
			do_mprotect = 1;
			break;
		case 's':
			store = 1;
			break;
		case 'b':
			block = 1;
			break;
		case 'f':
			do_fork = 1;
			break;
		case 'i':
			loop = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	fd = open(dev, oflags | O_CLOEXEC);
	if (fd < 0) {
		printf("open errno=%s\n", errname(errno));
		return 2;
	}

	p = map(&o, fd);
	if (!p)
		return 1;

	if (do_fork) {
		pid_t pid;
		int status;

		fflush(stdout);
		pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid > 0) {
			if (waitpid(pid, &status, 0) < 0) {
				perror("waitpid");
				return 1;
			}
			if (WIFSIGNALED(status))
				raise(WTERMSIG(status));
			return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
		}
		printf("child\n");
	}

	if (do_mprotect) {
		int r = mprotect(p, o.len, PROT_READ | PROT_WRITE);

		printf("mprotect ret=%d errno=%s\n", r, errname(r ? errno : 0));
	}

	if (store) {
		*(volatile uint32_t *)p = 0xdeadbeef;
		printf("store ok\n");
		return 3;
	}

	if (block) {
		uint32_t value = 0, mapped;
		ssize_t n;
		int err;

		n = read(fd, &value, sizeof(value));
		mapped = load(p);
		err = n < 0 ? errno : 0;
		printf("read ret=%zd value=%u mapped=%u errno=%s\n", n, value,
		       mapped, errname(err));
		if (n != sizeof(value))
			ok = 0;
	}

	if (loop)
		commands(&o, fd, p);

	close(fd);
	return ok ? 0 : 1;
}
