/* SPDX-License-Identifier: MIT */
/* The parts of libfuse3's cuse_lowlevel API the Python side calls or
 * names (native/shim/ calls the rest from C). */

typedef int... uid_t;
typedef int... gid_t;
typedef int... pid_t;

typedef struct fuse_req *fuse_req_t;
struct fuse_session;

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

/* transport.c's, handed from C to C (vmgenid_transport_cuse_ops()). */
struct cuse_lowlevel_ops;

struct fuse_session *cuse_lowlevel_new(struct fuse_args *args,
				       const struct cuse_info *ci,
				       const struct cuse_lowlevel_ops *clop,
				       void *userdata);
int fuse_session_mount(struct fuse_session *se, const char *mountpoint);
int fuse_session_fd(struct fuse_session *se);
void fuse_session_destroy(struct fuse_session *se);

const struct fuse_ctx *fuse_req_ctx(fuse_req_t req);

int fuse_reply_err(fuse_req_t req, int err);
int fuse_reply_open(fuse_req_t req, const struct fuse_file_info *fi);
int fuse_reply_ioctl(fuse_req_t req, int result, const void *buf,
		     size_t size);

/* Named by native/shim/publisher.h; the daemon passes NULL. */
struct timespec;
