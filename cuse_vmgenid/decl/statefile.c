/*
 * The state file's atomic replace: a temporary file, made ready ahead of
 * time, gets the data, is fsynced and renamed over the old one, and the
 * folder is fsynced.  In C, and with the file created before it is needed,
 * because a commit runs on every bump right after a restore, where every
 * code path touched for the first time costs milliseconds under emulation
 * (the same steps through Python's os module took 40-60 ms there).
 */

/* The temporary file, created empty; returns its fd or -errno. */
int vmgenid_state_prepare(int dir_fd, const char *tmp_name)
{
	int fd = openat(dir_fd, tmp_name,
			O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	return fd < 0 ? -errno : fd;
}

/* Write, fsync, close @fd, rename it to @name; returns 0 or -errno. */
int vmgenid_state_commit(int fd, int dir_fd, const char *tmp_name,
			 const char *name, const void *data, size_t len)
{
	const char *p = data;
	int err = 0;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			break;
		}
		p += n;
		len -= n;
	}
	if (!err && fsync(fd))
		err = -errno;
	close(fd);
	if (!err && renameat(dir_fd, tmp_name, dir_fd, name))
		err = -errno;
	if (!err && fsync(dir_fd))
		err = -errno;
	return err;
}
