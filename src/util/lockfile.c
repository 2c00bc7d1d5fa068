#include "util/lockfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int lockfile_take(const char *path, uint64_t slot, const char *what, int *fd_r,
		  struct err *err)
{
	*fd_r = -1;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_set(err, ERR_INTERNAL, "cannot create the lock file %s: %s", path,
			       strerror(errno));
	struct flock fl = {
		.l_type = F_WRLCK,
		.l_whence = SEEK_SET,
		.l_start = (off_t)(slot & 0x3fffffffffffull), /* a byte per pair */
		.l_len = 1,
	};
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		int e = errno;
		close(fd);
		if (e == EAGAIN || e == EACCES) {
			err_set(err, ERR_TRANSIENT, "%s is in use by another imapmig right now", what);
			err_hint(err, "wait for it to finish (or stop it); two at once could copy "
				      "messages twice");
			return -1;
		}
		return err_set(err, ERR_INTERNAL, "cannot lock %s: %s", path, strerror(e));
	}
	*fd_r = fd;
	return 0;
}

void lockfile_release(int *fd)
{
	if (*fd < 0)
		return;
	close(*fd); /* drops the lock */
	*fd = -1;
}
