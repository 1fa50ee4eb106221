/* SPDX-License-Identifier: MIT */
/* Shared by the test helpers: errno -> symbolic name ("EACCES"). */
#ifndef VMGENID_TESTS_ERRNAME_H
#define VMGENID_TESTS_ERRNAME_H

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define ERRNAME_ENTRY(e)	{ e, #e }

/* Fallback for C libraries without strerrorname_np (glibc < 2.32). */
static const struct {
	int num;
	const char *name;
} errname_table[] = {
	ERRNAME_ENTRY(EPERM), ERRNAME_ENTRY(ENOENT), ERRNAME_ENTRY(EINTR),
	ERRNAME_ENTRY(EIO), ERRNAME_ENTRY(ENXIO), ERRNAME_ENTRY(EBADF),
	ERRNAME_ENTRY(EAGAIN), ERRNAME_ENTRY(ENOMEM), ERRNAME_ENTRY(EACCES),
	ERRNAME_ENTRY(EFAULT), ERRNAME_ENTRY(EBUSY), ERRNAME_ENTRY(ENODEV),
	ERRNAME_ENTRY(EINVAL), ERRNAME_ENTRY(ENFILE), ERRNAME_ENTRY(EMFILE),
	ERRNAME_ENTRY(ENOTTY), ERRNAME_ENTRY(ENOSPC), ERRNAME_ENTRY(ERANGE),
	ERRNAME_ENTRY(ENOSYS), ERRNAME_ENTRY(ETIME), ERRNAME_ENTRY(EOVERFLOW),
	ERRNAME_ENTRY(ENOTCONN), ERRNAME_ENTRY(ETIMEDOUT),
	ERRNAME_ENTRY(ECONNABORTED), ERRNAME_ENTRY(EDQUOT),
};

static inline const char *errname(int e)
{
	static char buf[16];
	size_t i;

	if (e == 0)
		return "0";
#if defined(__GLIBC__) && \
	(__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	{
		const char *s = strerrorname_np(e);

		if (s)
			return s;
	}
#endif
	for (i = 0; i < sizeof(errname_table) / sizeof(errname_table[0]); i++)
		if (errname_table[i].num == e)
			return errname_table[i].name;
	snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

#endif /* VMGENID_TESTS_ERRNAME_H */
