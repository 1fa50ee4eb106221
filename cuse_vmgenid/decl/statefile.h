/* The state file's atomic replace (decl/statefile.c). */

int vmgenid_state_prepare(int dir_fd, const char *tmp_name);
int vmgenid_state_commit(int fd, int dir_fd, const char *tmp_name,
			 const char *name, const void *data, size_t len);
