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
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <sys/stat.h>

#include "page.h"

#define VMGENID_PAGE_TRIES 3

struct vmgenid_page {
	int fd;				/* read-write, kept for the repair */
	uint32_t *map;
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
 * @write(map, @value) into @page's mapping, its result in @result: 0, or
 * -EFAULT if the file was cut under the mapping (SIGBUS).
 */
static int page_try_write(struct vmgenid_page *page,
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
	*result = write(page->map, value);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	page_fault_jmp = NULL;
	return 0;
}

/* 1 if the file was short and has its size back, 0 if it was whole. */
static int page_restore_size(struct vmgenid_page *page)
{
	struct stat st;

	if (fstat(page->fd, &st))
		return -errno;
	if (st.st_size >= VMGENID_PAGE_SIZE)
		return 0;
	return ftruncate(page->fd, VMGENID_PAGE_SIZE) ? -errno : 1;
}

struct vmgenid_page *vmgenid_page_new(int fd, void *map)
{
	struct vmgenid_page *page;

	pthread_once(&page_sigbus_once, page_sigbus_install);
	page = calloc(1, sizeof(*page));
	if (!page)
		return NULL;
	page->fd = fd;
	page->map = map;
	return page;
}

void vmgenid_page_free(struct vmgenid_page *page)
{
	free(page);
}

/*
 * Run @write(map, @value) on the page, its size checked first: 0, 1 if the
 * page had been cut short and was repaired (the caller reports it), or
 * -errno if it could not be (the write is lost; the state file and the
 * replies still carry the value).  @result, if not NULL: what @write
 * returned.
 */
int vmgenid_page_write(struct vmgenid_page *page, vmgenid_page_write_fn write,
		       uint32_t value, int *result)
{
	int repaired = page_restore_size(page), i, err, ignored;

	if (repaired < 0)
		return repaired;
	for (i = 0; i < VMGENID_PAGE_TRIES; i++) {
		if (!page_try_write(page, write, value,
				    result ? result : &ignored))
			return repaired;
		/* Cut again between the check and the write. */
		err = page_restore_size(page);
		if (err < 0)
			return err;
		repaired = 1;
	}
	return -EFAULT;
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
