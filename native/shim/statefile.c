// SPDX-License-Identifier: MIT
/*
 * The state file's atomic replace: a temporary file, made ready ahead of
 * time, gets the data, is fsynced and renamed over the old one, and the
 * folder is fsynced.  In C, and with the file created before it is needed,
 * because a commit runs on every bump right after a restore, where every
 * code path touched for the first time costs milliseconds under emulation
 * (docs/benchmarks.rst times this commit right after a restore).
 *
 * The next commit's content is staged in the temporary file ahead of time
 * too (the daemon stages the bump it arms): a commit then only overwrites
 * the bytes that differ (the new GUID), which costs less right after a
 * restore than filling an empty file, and formats with no stdio.
 *
 * The temporary file has a name unique to this daemon and is created
 * with O_EXCL and O_NOFOLLOW: whatever is planted in the folder is never
 * followed or overwritten, and a commit renames its name only while that
 * still is the file it wrote (a rename moves the name itself).  It is
 * locked (flock) for as long as the daemon has it open, which ends with
 * the daemon however it ends: a starting daemon removes the ones of its
 * state file that nobody holds, which daemons killed before left
 * (cuse_vmgenid/device/statefile.py).
 *
 * Two writers share it under one lock: the daemon, on every bump, and the
 * GUID poll thread, both through the publisher (publisher.c).  A save of
 * exactly what the file holds is skipped (the daemon saves at its end).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>		/* renameat */
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>	/* flock */
#include <sys/stat.h>
#include <unistd.h>

#include "guid.h"
#include "statefile.h"

#define VMGENID_STATEFILE_MAX 256		/* the JSON, with room to spare */
#define VMGENID_BOOT_ID_MAX 40		/* 36 characters and a NUL */

struct vmgenid_statefile {
	pthread_mutex_t lock;
	int dir_fd;
	int tmp_fd;			/* the next commit's file, or -1 */
	dev_t tmp_dev;			/* and its identity */
	ino_t tmp_ino;
	int held_fd;			/* the file it replaces, or -1 */
	int replaced_fd;		/* the file the last commit replaced */
	char name[NAME_MAX + 1];
	char tmp_name[NAME_MAX + 1];
	char boot_id[VMGENID_BOOT_ID_MAX];
	int has_vmclock;		/* the vmclock tier's counter, kept too */
	uint64_t vmclock_counter;
	char last[VMGENID_STATEFILE_MAX];	/* what the file holds */
	int last_len;
	char staged[VMGENID_STATEFILE_MAX];	/* what the temporary file holds */
	int staged_len;
};

struct vmgenid_statefile *
vmgenid_statefile_open(int dir_fd, const char *name, const char *tmp_name,
		       const char *boot_id)
{
	struct vmgenid_statefile *sf;

	if (strlen(name) > NAME_MAX || strlen(tmp_name) > NAME_MAX ||
	    strlen(boot_id) >= VMGENID_BOOT_ID_MAX) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	sf = calloc(1, sizeof(*sf));
	if (!sf)
		return NULL;
	pthread_mutex_init(&sf->lock, NULL);
	sf->dir_fd = dir_fd;
	sf->tmp_fd = -1;
	sf->held_fd = -1;
	sf->replaced_fd = -1;
	strcpy(sf->name, name);
	strcpy(sf->tmp_name, tmp_name);
	strcpy(sf->boot_id, boot_id);
	return sf;
}

/*
 * The next commit's temporary file, locked; its descriptor or -errno.  A
 * starting daemon may have taken the lock first and removed the file
 * (it cannot tell a file just made from a dead daemon's): it is then
 * made again.  Without a lock (flock failed) the file still serves.
 *
 * Whatever else is at the name, which is this daemon's own, was put
 * there (root, a restore of the folder): it is removed, never followed.
 */
static int state_create_tmp(struct vmgenid_statefile *sf)
{
	struct stat st;
	int fd, err, locked, tries;

	for (tries = 0; tries < 2; tries++) {
		fd = openat(sf->dir_fd, sf->tmp_name,
			    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			    0600);
		if (fd < 0 && errno == EEXIST && !tries) {
			unlinkat(sf->dir_fd, sf->tmp_name, 0);
			continue;
		}
		if (fd < 0)
			return -errno;
		locked = !flock(fd, LOCK_EX);
		if (fstat(fd, &st)) {
			err = -errno;
			close(fd);	/* the next prepare removes it */
			return err;
		}
		if (!locked || st.st_nlink) {
			sf->tmp_dev = st.st_dev;
			sf->tmp_ino = st.st_ino;
			return fd;
		}
		close(fd);
	}
	return -EAGAIN;
}

/*
 * 0 if the temporary file's name still is the file we hold, else -errno
 * (-EEXIST: something else is there).  A rename moves the name, not the
 * file, so it would make whatever was put there the state file.
 */
static int state_tmp_check(const struct vmgenid_statefile *sf)
{
	struct stat st;

	if (fstatat(sf->dir_fd, sf->tmp_name, &st, AT_SYMLINK_NOFOLLOW))
		return -errno;
	if (st.st_dev != sf->tmp_dev || st.st_ino != sf->tmp_ino)
		return -EEXIST;
	return 0;
}

/*
 * The file a commit replaces is held open until the next prepare, which
 * the daemon runs after the wake-ups: so the rename does not free it, and
 * the kernel's freeing (cold code right after a restore, milliseconds
 * under emulation) happens off the critical path.
 */
static int state_prepare_locked(struct vmgenid_statefile *sf)
{
	if (sf->replaced_fd >= 0) {
		close(sf->replaced_fd);
		sf->replaced_fd = -1;
	}
	if (sf->held_fd < 0)	/* ENOENT before the first commit: fine */
		sf->held_fd = openat(sf->dir_fd, sf->name,
				     O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (sf->tmp_fd < 0) {
		sf->tmp_fd = state_create_tmp(sf);
		if (sf->tmp_fd < 0)
			return sf->tmp_fd;
		sf->staged_len = 0;
	}
	return 0;
}

/* Ours, if made and still at its name: the next prepare makes it again. */
static void state_discard_locked(struct vmgenid_statefile *sf)
{
	if (sf->tmp_fd < 0)
		return;
	if (!state_tmp_check(sf))
		unlinkat(sf->dir_fd, sf->tmp_name, 0);
	close(sf->tmp_fd);
	sf->tmp_fd = -1;
}

static char *put_text(char *p, const char *text)
{
	while (*text)
		*p++ = *text++;
	return p;
}

static char *put_u64(char *p, uint64_t value)
{
	char digits[20];
	int n = 0;

	do {
		digits[n++] = '0' + value % 10;
		value /= 10;
	} while (value);
	while (n)
		*p++ = digits[--n];
	return p;
}

/*
 * The JSON for (@counter, @guid or NULL, @kmsg_seq: the sequence number of
 * the last kernel log record the kernel-log tier applied, or -1 for none)
 * in @out; its length or -errno.
 */
static int state_format(const struct vmgenid_statefile *sf, uint32_t counter,
			const char *guid, int64_t kmsg_seq, char *out)
{
	char *p = out;

	if (guid && strlen(guid) > VMGENID_GUID_TEXT)
		return -EINVAL;
	p = put_text(p, "{\"boot_id\": \"");
	p = put_text(p, sf->boot_id);
	p = put_text(p, "\", \"counter\": ");
	p = put_u64(p, counter);
	p = put_text(p, ", \"guid\": ");
	if (guid) {
		*p++ = '"';
		p = put_text(p, guid);
		*p++ = '"';
	} else {
		p = put_text(p, "null");
	}
	if (kmsg_seq >= 0) {
		p = put_text(p, ", \"kmsg_seq\": ");
		p = put_u64(p, kmsg_seq);
	}
	if (sf->has_vmclock) {
		p = put_text(p, ", \"vmclock_counter\": ");
		p = put_u64(p, sf->vmclock_counter);
	}
	p = put_text(p, "}\n");
	return p - out;
}

static int write_at(int fd, const char *p, size_t left, off_t off)
{
	while (left) {
		ssize_t n = pwrite(fd, p, left, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		off += n;
		left -= n;
	}
	return 0;
}

/* Make the temporary file hold @data: only the bytes that differ. */
static int state_stage_locked(struct vmgenid_statefile *sf,
			      const char *data, int len)
{
	int first = 0, end = len, err;

	err = sf->tmp_fd < 0 ? state_prepare_locked(sf) : 0;
	if (err)
		return err;
	if (len == sf->staged_len) {
		while (first < len && data[first] == sf->staged[first])
			first++;
		while (end > first && data[end - 1] == sf->staged[end - 1])
			end--;
	}
	err = write_at(sf->tmp_fd, data + first, end - first, first);
	if (!err && (sf->staged_len < 0 || sf->staged_len > len) &&
	    ftruncate(sf->tmp_fd, len))
		err = -errno;
	if (err) {
		sf->staged_len = -1;	/* unknown: rewritten whole next time */
		return err;
	}
	memcpy(sf->staged, data, len);
	sf->staged_len = len;
	return 0;
}

/*
 * Stage @data, fsync, rename it over the file, fsync the folder.  If the
 * temporary file's name no longer is ours, the file is dropped and the
 * commit made once more with a new one, so that this change is kept.
 */
static int state_commit_locked(struct vmgenid_statefile *sf,
			       const char *data, int len)
{
	int err, tries = 0;

again:
	err = state_stage_locked(sf, data, len);
	if (!err && fsync(sf->tmp_fd))
		err = -errno;
	if (!err) {
		err = state_tmp_check(sf);
		if (err && !tries++) {
			close(sf->tmp_fd);
			sf->tmp_fd = -1;
			goto again;
		}
	}
	if (!err && renameat(sf->dir_fd, sf->tmp_name, sf->dir_fd, sf->name))
		err = -errno;
	if (err) {
		state_discard_locked(sf);
		return err;
	}
	/* The temporary file is the state file now. */
	sf->replaced_fd = sf->held_fd;
	sf->held_fd = sf->tmp_fd;
	sf->tmp_fd = -1;
	return fsync(sf->dir_fd) ? -errno : 0;
}

/*
 * Commit (@counter, @guid: a GUID string, or NULL) unless the file holds
 * exactly that already.  Returns 1 if written, 0 if already there, or
 * -errno.
 */
static int state_save_locked(struct vmgenid_statefile *sf, uint32_t counter,
			     const char *guid, int64_t kmsg_seq)
{
	char data[VMGENID_STATEFILE_MAX];
	int len, err;

	len = state_format(sf, counter, guid, kmsg_seq, data);
	if (len < 0)
		return len;
	if (len == sf->last_len && !memcmp(data, sf->last, len))
		return 0;
	err = state_commit_locked(sf, data, len);
	if (err)
		return err;
	memcpy(sf->last, data, len);
	sf->last_len = len;
	return 1;
}

int vmgenid_statefile_prepare(struct vmgenid_statefile *sf)
{
	int err;

	pthread_mutex_lock(&sf->lock);
	err = state_prepare_locked(sf);
	pthread_mutex_unlock(&sf->lock);
	return err;
}

int vmgenid_statefile_save(struct vmgenid_statefile *sf, uint32_t counter,
			   const char *guid, int64_t kmsg_seq)
{
	int ret;

	pthread_mutex_lock(&sf->lock);
	ret = state_save_locked(sf, counter, guid, kmsg_seq);
	pthread_mutex_unlock(&sf->lock);
	return ret;
}

/*
 * The vmclock tier's vm_generation_counter (@present 0: none) that every
 * later commit keeps beside the counter, for a restart to compare.
 */
void vmgenid_statefile_set_vmclock(struct vmgenid_statefile *sf, int present,
				   uint64_t counter)
{
	pthread_mutex_lock(&sf->lock);
	sf->has_vmclock = present;
	sf->vmclock_counter = counter;
	pthread_mutex_unlock(&sf->lock);
}

/* Make the next commit of (@counter, @guid) cheap; 0 or -errno. */
int vmgenid_statefile_stage(struct vmgenid_statefile *sf, uint32_t counter,
			    const char *guid, int64_t kmsg_seq)
{
	char data[VMGENID_STATEFILE_MAX];
	int len;

	pthread_mutex_lock(&sf->lock);
	len = state_format(sf, counter, guid, kmsg_seq, data);
	if (len >= 0)
		len = state_stage_locked(sf, data, len);
	pthread_mutex_unlock(&sf->lock);
	return len < 0 ? len : 0;
}

/*
 * Removes the prepared file: a daemon that fails to start, with @sf in
 * the publisher's hands, leaves none (a later commit makes it again).
 */
void vmgenid_statefile_discard(struct vmgenid_statefile *sf)
{
	pthread_mutex_lock(&sf->lock);
	state_discard_locked(sf);
	pthread_mutex_unlock(&sf->lock);
}

/* Removes the prepared file (no commit may follow) and frees @sf. */
void vmgenid_statefile_close(struct vmgenid_statefile *sf)
{
	state_discard_locked(sf);
	if (sf->held_fd >= 0)
		close(sf->held_fd);
	if (sf->replaced_fd >= 0)
		close(sf->replaced_fd);
	pthread_mutex_destroy(&sf->lock);
	free(sf);
}
