// SPDX-License-Identifier: MIT
/*
 * The page's counter.  Readers map the page and load the counter without
 * any lock: it must change with one aligned 32-bit atomic store through
 * the mapping, never byte by byte.  (A pwrite() to the file would never
 * fault, but the kernel copies it with no promise of one 4-byte store: a
 * reader could see half of the new value.)
 *
 * Anyone with root can truncate the file under the mapping (a careless
 * `truncate -s 0`); a store then raises SIGBUS, which would end the
 * daemon.  So before each store the size is checked and restored in place
 * (ftruncate of the same inode: every client's mapping is valid again),
 * and a truncation racing between that check and the store is caught: the
 * store runs with a SIGBUS handler armed for this thread, which jumps back
 * out; the size is restored and the store done again.  The GUID poll
 * thread stores through here too (publisher.c), and the VMClock-ABI
 * page's writer runs under the same guard (vmclock.c).
 *
 * Root can also replace the file at the page's path (`mv new page`): the
 * daemon then puts a new file of its own there (page.py), adopted here
 * with the content of the one it replaces.  Programs that mapped an older
 * file still map it, so every store goes to each file the page has had,
 * newest first, up to VMGENID_PAGE_FILES of them.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/stat.h>

#include "page.h"

#define VMGENID_PAGE_TRIES 3

struct vmgenid_page_file {
	int fd;				/* read-write, kept for the repair */
	uint32_t *map;
};

struct vmgenid_page {
	pthread_mutex_t lock;		/* the files, and every write */
	int count;
	struct vmgenid_page_file files[VMGENID_PAGE_FILES]; /* [0]: newest */
};

/* Where this thread's guarded store jumps to on SIGBUS, or NULL. */
static __thread sigjmp_buf *volatile page_fault_jmp;
static struct sigaction page_old_sigbus;
static pthread_once_t page_sigbus_once = PTHREAD_ONCE_INIT;

static void page_sigbus(int sig, siginfo_t *info, void *ctx)
{
	(void)sig;
	(void)info;
	(void)ctx;
	if (page_fault_jmp)
		siglongjmp(*page_fault_jmp, 1);
	/* Not a page store: the old disposition takes the fault again. */
	sigaction(SIGBUS, &page_old_sigbus, NULL);
}

static void page_sigbus_install(void)
{
	/* SA_NODEFER: jumping out leaves SIGBUS unblocked. */
	struct sigaction sa = {
		.sa_sigaction = page_sigbus,
		.sa_flags = SA_SIGINFO | SA_NODEFER,
	};

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &page_old_sigbus);
}

/*
 * @write(map, @value) into @file's mapping, its result in @result: 0, or
 * -EFAULT if the file was cut under the mapping (SIGBUS).
 */
static int page_try_write(struct vmgenid_page_file *file,
			  vmgenid_page_write_fn write, uint32_t value,
			  int *result)
{
	sigjmp_buf jmp;

	if (sigsetjmp(jmp, 0)) {
		page_fault_jmp = NULL;
		return -EFAULT;
	}
	page_fault_jmp = &jmp;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	*result = write(file->map, value);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	page_fault_jmp = NULL;
	return 0;
}

/* 1 if the file was short and has its size back, 0 if it was whole. */
static int page_restore_size(struct vmgenid_page_file *file)
{
	struct stat st;

	if (fstat(file->fd, &st))
		return -errno;
	if (st.st_size >= VMGENID_PAGE_SIZE)
		return 0;
	return ftruncate(file->fd, VMGENID_PAGE_SIZE) ? -errno : 1;
}

struct vmgenid_page *vmgenid_page_new(int fd, void *map)
{
	struct vmgenid_page *page;

	pthread_once(&page_sigbus_once, page_sigbus_install);
	page = calloc(1, sizeof(*page));
	if (!page)
		return NULL;
	pthread_mutex_init(&page->lock, NULL);
	page->files[0].fd = fd;
	page->files[0].map = map;
	page->count = 1;
	return page;
}

void vmgenid_page_free(struct vmgenid_page *page)
{
	pthread_mutex_destroy(&page->lock);
	free(page);
}

/* The whole of @fd's first page in @buf; bytes past its end are 0. */
static int page_read_file(int fd, char *buf)
{
	size_t done = 0;
	ssize_t n;

	while (done < VMGENID_PAGE_SIZE) {
		n = pread(fd, buf + done, VMGENID_PAGE_SIZE - done, done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (!n)
			break;
		done += n;
	}
	memset(buf + done, 0, VMGENID_PAGE_SIZE - done);
	return 0;
}

static int page_write_file(int fd, const char *buf)
{
	size_t done = 0;
	ssize_t n;

	while (done < VMGENID_PAGE_SIZE) {
		n = pwrite(fd, buf + done, VMGENID_PAGE_SIZE - done, done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		done += n;
	}
	return 0;
}

/*
 * A new file for the page (@fd, mapped read-write at @map, not yet at the
 * page's path): it gets the newest file's content and from now on every
 * write, first of all.  0, -ENOSPC if the page has VMGENID_PAGE_FILES
 * files already (vmgenid_page_forget() one first), or -errno.
 */
int vmgenid_page_adopt(struct vmgenid_page *page, int fd, void *map)
{
	char buf[VMGENID_PAGE_SIZE];
	int err;

	pthread_mutex_lock(&page->lock);
	err = page->count == VMGENID_PAGE_FILES ? -ENOSPC : 0;
	/* Under the lock: no write is under way (a VMClock page's seqlock). */
	if (!err)
		err = page_read_file(page->files[0].fd, buf);
	if (!err)
		err = page_write_file(fd, buf);
	if (!err) {
		memmove(&page->files[1], &page->files[0],
			page->count * sizeof(page->files[0]));
		page->files[0].fd = fd;
		page->files[0].map = map;
		page->count++;
	}
	pthread_mutex_unlock(&page->lock);
	return err;
}

/*
 * Stop writing the file mapped at @map (the caller then unmaps and closes
 * it): 0, or -ENOENT if the page has no such file, or it is the only one.
 */
int vmgenid_page_forget(struct vmgenid_page *page, void *map)
{
	int i, err = -ENOENT;

	pthread_mutex_lock(&page->lock);
	for (i = 0; i < page->count && page->count > 1; i++) {
		if (page->files[i].map != map)
			continue;
		memmove(&page->files[i], &page->files[i + 1],
			(page->count - i - 1) * sizeof(page->files[0]));
		page->count--;
		err = 0;
		break;
	}
	pthread_mutex_unlock(&page->lock);
	return err;
}

/*
 * Run @write(map, @value) on one file, its size checked first: 0, 1 if it
 * had been cut short and was repaired, or -errno.
 */
static int page_write_one(struct vmgenid_page_file *file,
			  vmgenid_page_write_fn write, uint32_t value,
			  int *result)
{
	int repaired = page_restore_size(file), i, err;

	if (repaired < 0)
		return repaired;
	for (i = 0; i < VMGENID_PAGE_TRIES; i++) {
		if (!page_try_write(file, write, value, result))
			return repaired;
		/* Cut again between the check and the write. */
		err = page_restore_size(file);
		if (err < 0)
			return err;
		repaired = 1;
	}
	return -EFAULT;
}

/*
 * Run @write(map, @value) on each of the page's files: 0, 1 if one had
 * been cut short and was repaired (the caller reports it), or -errno if
 * the newest could not be (the write is lost; the state file and the
 * replies still carry the value).  @result, if not NULL: what @write
 * returned on the newest file.
 */
int vmgenid_page_write(struct vmgenid_page *page, vmgenid_page_write_fn write,
		       uint32_t value, int *result)
{
	int ret, i, one, ignored;

	pthread_mutex_lock(&page->lock);
	ret = page_write_one(&page->files[0], write, value,
			     result ? result : &ignored);
	for (i = 1; i < page->count; i++) {
		one = page_write_one(&page->files[i], write, value, &ignored);
		if (one > 0 && !ret)
			ret = 1;
	}
	pthread_mutex_unlock(&page->lock);
	return ret;
}

static int page_put_counter(void *map, uint32_t value)
{
	__atomic_store_n((uint32_t *)map, value, __ATOMIC_SEQ_CST);
	return 0;
}

/* The counter page's store: vmgenid_page_write()'s return. */
int vmgenid_page_store(struct vmgenid_page *page, uint32_t value)
{
	return vmgenid_page_write(page, page_put_counter, value, NULL);
}
