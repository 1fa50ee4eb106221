/* SPDX-License-Identifier: MIT */
/* The kernel's file operations, answered in Python (transport.py). */

extern "Python" {
	void vmgenid_init_done(void *userdata);
	void vmgenid_open(fuse_req_t req, struct fuse_file_info *fi);
	void vmgenid_read(fuse_req_t req, size_t size, off_t off,
			  struct fuse_file_info *fi);
	void vmgenid_write(fuse_req_t req, const char *buf, size_t size,
			   off_t off, struct fuse_file_info *fi);
	void vmgenid_release(fuse_req_t req, struct fuse_file_info *fi);
	void vmgenid_ioctl(fuse_req_t req, int cmd, void *arg,
			   struct fuse_file_info *fi, unsigned int flags,
			   const void *in_buf, size_t in_bufsz,
			   size_t out_bufsz);
	void vmgenid_poll(fuse_req_t req, struct fuse_file_info *fi,
			  struct fuse_pollhandle *ph);
	void vmgenid_interrupt(fuse_req_t req, void *data);
}
