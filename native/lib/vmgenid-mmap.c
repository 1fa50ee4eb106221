// SPDX-License-Identifier: GPL-2.0+
/*
 * libvmgenid-mmap.so: mmap() of /dev/vmgenid for unmodified programs.
 *
 * CUSE has no mmap: the kernel answers ENODEV for a mapping of a CUSE
 * device.  The daemon keeps the counter in the page instead, a 4096-byte
 * file (default /run/vmgenid/page, mode 0444) whose first 4 bytes always
 * hold the counter, updated in place with one aligned 32-bit store.
 *
 * Preloaded (LD_PRELOAD=libvmgenid-mmap.so), this library interposes
 * mmap() and mmap64(): a mapping of a character device whose st_rdev is
 * the current st_rdev of the node maps the page instead, as the vmgenid v3
 * driver's vmgenid_mmap() would have mapped its page:
 *
 *	length > 4096 or offset != 0	EINVAL
 *	PROT_WRITE			EPERM
 *	page missing or short		ENODEV
 *
 * The page is always mapped MAP_SHARED from a read-only descriptor, even
 * for a MAP_PRIVATE request (v3 cleared VM_MAYWRITE): a private copy could
 * be made writable and would stop updating, while a shared mapping of a
 * read-only file keeps updating and mprotect(PROT_WRITE) on it fails with
 * EACCES.  The page descriptor is closed at once; the mapping keeps the
 * file (the daemon never unlinks, renames or truncates it).
 *
 * The node is stat()ed on every device mapping: the CUSE major/minor is
 * dynamic and may change across daemon restarts.  Every other mmap() goes
 * straight to the next definition (libc): anonymous mappings and negative
 * descriptors without a system call, other files after one fstat().
 *
 * Environment (read once at load, ignored in secure-execution mode):
 *	VMGENID_DEVICE	the node (default /dev/vmgenid)
 *	VMGENID_PAGE	the page (default /run/vmgenid/page)
 * A value longer than PATH_MAX - 1 disables the library (every mapping is
 * passed through).
 *
 * No allocation and no stdio after load: the mapping path only makes
 * async-signal-safe system calls.  Not covered: mappings made through
 * syscall(SYS_mmap), glibc-internal mappings, mremap() of the page (v3 set
 * VM_DONTEXPAND; here growing it past the file gives SIGBUS on access).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define VMGENID_DEFAULT_DEVICE	"/dev/vmgenid"
#define VMGENID_DEFAULT_PAGE	"/run/vmgenid/page"
#define VMGENID_PAGE_SIZE	4096

#define __public	__attribute__((visibility("default")))

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef void *(*mmap64_fn)(void *, size_t, int, int, int, off64_t);

static mmap_fn next_mmap;
static mmap64_fn next_mmap64;

/* Defaults hold before the constructor ran. */
static char device_path[PATH_MAX] = VMGENID_DEFAULT_DEVICE;
static char page_path[PATH_MAX] = VMGENID_DEFAULT_PAGE;

static void set_path(char *dst, const char *name)
{
	const char *val = secure_getenv(name);
	size_t len;

	if (!val || !*val)
		return;
	len = strlen(val);
	if (len >= PATH_MAX) {
		dst[0] = '\0';	/* stat("") fails: the library is inert */
		return;
	}
	memcpy(dst, val, len + 1);
}

__attribute__((constructor(101)))
static void vmgenid_mmap_init(void)
{
	set_path(device_path, "VMGENID_DEVICE");
	set_path(page_path, "VMGENID_PAGE");
	if (!device_path[0] || !page_path[0])
		device_path[0] = page_path[0] = '\0';

	next_mmap = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
	next_mmap64 = (mmap64_fn)dlsym(RTLD_NEXT, "mmap64");
}

/* Before the constructor resolved libc's mmap (or if dlsym failed). */
static void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd,
		      off64_t off)
{
#ifdef SYS_mmap2
	if (off & (VMGENID_PAGE_SIZE - 1)) {
		errno = EINVAL;
		return MAP_FAILED;
	}
	return (void *)syscall(SYS_mmap2, addr, len, prot, flags, fd,
			       (unsigned long)(off / VMGENID_PAGE_SIZE));
#else
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
#endif
}

static void *forward(int wide, void *addr, size_t len, int prot, int flags,
		     int fd, off64_t off)
{
	if (wide && next_mmap64)
		return next_mmap64(addr, len, prot, flags, fd, off);
	if (next_mmap && (off_t)off == off)
		return next_mmap(addr, len, prot, flags, fd, (off_t)off);
	if (next_mmap64)
		return next_mmap64(addr, len, prot, flags, fd, off);
	return sys_mmap(addr, len, prot, flags, fd, off);
}

/* fd is a character device with the node's current st_rdev. */
static int is_vmgenid(int fd)
{
	struct stat fst, nst;
	int saved = errno;

	if (fstat(fd, &fst) || !S_ISCHR(fst.st_mode))
		goto no;
	if (stat(device_path, &nst) || !S_ISCHR(nst.st_mode) ||
	    nst.st_rdev != fst.st_rdev)
		goto no;
	return 1;
no:
	errno = saved;
	return 0;
}

static void *fail(int err)
{
	errno = err;
	return MAP_FAILED;
}

static int open_page(void)
{
	struct stat st;
	int fd, err;

	fd = open(page_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		err = errno;
		/* Out of resources is not a missing page. */
		if (err == EMFILE || err == ENFILE || err == ENOMEM)
			return -err;
		return -ENODEV;
	}
	/* A short page would give SIGBUS instead of the counter. */
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) ||
	    st.st_size < VMGENID_PAGE_SIZE) {
		close(fd);
		return -ENODEV;
	}
	return fd;
}

/*
 * The kernel's generic checks (do_mmap(), in its order) where a
 * mapping of the node would meet them before the driver, then v3's
 * vmgenid_mmap().
 */
static void *map_page(int wide, void *addr, size_t len, int prot, int flags,
		      int fd, off64_t off)
{
	int type = flags & MAP_TYPE;
	int fl, acc, pfd, err;
	void *p;

	/*
	 * Unaligned offset, zero length, unknown mapping type: EINVAL
	 * from the kernel before it looks at the device.
	 */
	if ((off & (VMGENID_PAGE_SIZE - 1)) || !len ||
	    (type != MAP_SHARED && type != MAP_SHARED_VALIDATE &&
	     type != MAP_PRIVATE))
		return forward(wide, addr, len, prot, flags, fd, off);

	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & O_PATH))	/* EBADF from the kernel */
		return forward(wide, addr, len, prot, flags, fd, off);
	acc = fl & O_ACCMODE;
	if (acc == O_WRONLY)
		return fail(EACCES);
	if (type != MAP_PRIVATE && (prot & PROT_WRITE) && acc != O_RDWR)
		return fail(EACCES);

	/* vmgenid_mmap() */
	if (off != 0 || len > VMGENID_PAGE_SIZE)
		return fail(EINVAL);
	if (prot & PROT_WRITE)
		return fail(EPERM);

	pfd = open_page();
	if (pfd < 0)
		return fail(-pfd);
	if (type == MAP_PRIVATE)
		flags = (flags & ~MAP_TYPE) | MAP_SHARED;
	p = forward(wide, addr, len, prot, flags, pfd, 0);
	err = errno;
	close(pfd);
	if (p != MAP_FAILED)
		madvise(p, len, MADV_DONTDUMP);	/* v3: VM_DONTDUMP */
	errno = err;
	return p;
}

__public void *mmap(void *addr, size_t len, int prot, int flags, int fd,
		    off_t off)
{
	if (fd >= 0 && !(flags & MAP_ANONYMOUS) && is_vmgenid(fd))
		return map_page(0, addr, len, prot, flags, fd, off);
	return forward(0, addr, len, prot, flags, fd, off);
}

__public void *mmap64(void *addr, size_t len, int prot, int flags, int fd,
		      off64_t off)
{
	if (fd >= 0 && !(flags & MAP_ANONYMOUS) && is_vmgenid(fd))
		return map_page(1, addr, len, prot, flags, fd, off);
	return forward(1, addr, len, prot, flags, fd, off);
}
