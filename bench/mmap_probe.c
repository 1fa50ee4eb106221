// SPDX-License-Identifier: MIT
/*
 * mmap_probe [-d DEV] [-n LOADS] [-r READS]
 *
 * What a probe of the generation counter costs: ns per load of the
 * mapped counter page (DEV mmap()ed PROT_READ MAP_SHARED, which needs
 * LD_PRELOAD=libvmgenid-mmap.so) against ns per load from a plain
 * anonymous page; both are volatile loads in a loop of LOADS (default
 * 10^8) timed with CLOCK_MONOTONIC, three rounds each, interleaved; the
 * best round is printed.  With -r READS, also ns per
 * non-blocking read() of DEV (an up-to-date watcher: EAGAIN, one round
 * trip to the daemon each), for scale.  A figure, not a test.
 *
 * Built by `make -C native` as native/build/mmap_probe.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static double loads(const volatile uint32_t *p, unsigned long n,
		    uint32_t *sum)
{
	uint32_t s = 0;
	unsigned long i;
	double t0 = now_ns();

	for (i = 0; i < n; i++)
		s += *p;
	*sum = s;
	return (now_ns() - t0) / n;
}

static void usage(void)
{
	fprintf(stderr, "usage: mmap_probe [-d DEV] [-n LOADS] [-r READS]\n");
	exit(64);
}

int main(int argc, char **argv)
{
	const char *dev = "/dev/vmgenid";
	unsigned long n = 100000000UL, reads = 0, i, again = 0;
	volatile uint32_t *page, *anon;
	uint32_t sum, value;
	double mapped_ns = 0, anon_ns = 0, t;
	int fd, opt, round;

	while ((opt = getopt(argc, argv, "d:n:r:")) != -1) {
		switch (opt) {
		case 'd':
			dev = optarg;
			break;
		case 'n':
			n = strtoul(optarg, NULL, 0);
			break;
		case 'r':
			reads = strtoul(optarg, NULL, 0);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || !n)
		usage();

	fd = open(dev, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "open %s: %s\n", dev, strerror(errno));
		return 1;
	}
	page = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	if (page == MAP_FAILED) {
		fprintf(stderr, "mmap %s: %s (preload libvmgenid-mmap.so)\n",
			dev, strerror(errno));
		return 1;
	}
	anon = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (anon == MAP_FAILED) {
		perror("mmap anonymous");
		return 1;
	}
	*anon = 1;			/* fault it in */
	value = *page;

	/* Warm up both (faults, caches), then measure. */
	loads(page, n / 100 + 1, &sum);
	loads(anon, n / 100 + 1, &sum);
	for (round = 0; round < 3; round++) {
		t = loads(page, n, &sum);
		if (!round || t < mapped_ns)
			mapped_ns = t;
		t = loads(anon, n, &sum);
		if (!round || t < anon_ns)
			anon_ns = t;
	}

	printf("loads=%lu counter=%u\n", n, value);
	printf("mapped counter: %.3f ns/load\n", mapped_ns);
	printf("anonymous page: %.3f ns/load\n", anon_ns);

	if (reads) {
		int nfd = open(dev, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		double t0;

		if (nfd < 0) {
			perror("open O_NONBLOCK");
			return 1;
		}
		t0 = now_ns();
		for (i = 0; i < reads; i++)
			if (read(nfd, &value, sizeof(value)) < 0 &&
			    errno == EAGAIN)
				again++;
		printf("read(O_NONBLOCK): %.0f ns/call (%lu calls, %lu EAGAIN)\n",
		       (now_ns() - t0) / reads, reads, again);
		close(nfd);
	}
	close(fd);
	return 0;
}
