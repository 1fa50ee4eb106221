/* SPDX-License-Identifier: MIT */
/* The parts of libfuse3's cuse_lowlevel API the transport uses. */

typedef int... uid_t;
typedef int... gid_t;
typedef int... pid_t;
typedef int... off_t;

typedef struct fuse_req *fuse_req_t;
struct fuse_session;
struct fuse_pollhandle;
struct fuse_conn_info;

struct fuse_args {
	int argc;
	char **argv;
	int allocated;
};

struct fuse_file_info {
	int flags;
	uint64_t fh;
	...;
};

struct fuse_ctx {
	uid_t uid;
	gid_t gid;
	pid_t pid;
	...;
};

struct fuse_buf {
	size_t size;
	void *mem;
	...;
};

struct cuse_info {
	unsigned dev_major;
	unsigned dev_minor;
	unsigned dev_info_argc;
	const char **dev_info_argv;
	unsigned flags;
};

struct cuse_lowlevel_ops {
	void (*init)(void *userdata, struct fuse_conn_info *conn);
	void (*init_done)(void *userdata);
	void (*destroy)(void *userdata);
	void (*open)(fuse_req_t req, struct fuse_file_info *fi);
	void (*read)(fuse_req_t req, size_t size, off_t off,
		     struct fuse_file_info *fi);
	void (*write)(fuse_req_t req, const char *buf, size_t size, off_t off,
		      struct fuse_file_info *fi);
	void (*flush)(fuse_req_t req, struct fuse_file_info *fi);
	void (*release)(fuse_req_t req, struct fuse_file_info *fi);
	void (*fsync)(fuse_req_t req, int datasync, struct fuse_file_info *fi);
	void (*ioctl)(fuse_req_t req, int cmd, void *arg,
		      struct fuse_file_info *fi, unsigned int flags,
		      const void *in_buf, size_t in_bufsz, size_t out_bufsz);
	void (*poll)(fuse_req_t req, struct fuse_file_info *fi,
		     struct fuse_pollhandle *ph);
};

typedef void (*fuse_interrupt_func_t)(fuse_req_t req, void *data);

struct fuse_session *cuse_lowlevel_new(struct fuse_args *args,
				       const struct cuse_info *ci,
				       const struct cuse_lowlevel_ops *clop,
				       void *userdata);
int fuse_session_mount(struct fuse_session *se, const char *mountpoint);
int fuse_session_fd(struct fuse_session *se);
int fuse_session_receive_buf(struct fuse_session *se, struct fuse_buf *buf);
void fuse_session_process_buf(struct fuse_session *se,
			      const struct fuse_buf *buf);
int fuse_session_exited(struct fuse_session *se);
void fuse_session_destroy(struct fuse_session *se);

const struct fuse_ctx *fuse_req_ctx(fuse_req_t req);
void fuse_req_interrupt_func(fuse_req_t req, fuse_interrupt_func_t func,
			     void *data);
int fuse_req_interrupted(fuse_req_t req);

int fuse_reply_err(fuse_req_t req, int err);
int fuse_reply_open(fuse_req_t req, const struct fuse_file_info *fi);
int fuse_reply_write(fuse_req_t req, size_t count);
int fuse_reply_buf(fuse_req_t req, const char *buf, size_t size);
int fuse_reply_ioctl(fuse_req_t req, int result, const void *buf,
		     size_t size);
int fuse_reply_poll(fuse_req_t req, unsigned revents);
int fuse_lowlevel_notify_poll(struct fuse_pollhandle *ph);
void fuse_pollhandle_destroy(struct fuse_pollhandle *ph);

#define FUSE_IOCTL_COMPAT ...

/* Named by native/shim/publisher.h; the daemon passes NULL. */
struct timespec;
