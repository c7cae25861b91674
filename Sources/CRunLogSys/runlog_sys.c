#define _GNU_SOURCE
#include "runlog_sys.h"
#include <unistd.h>
#include <errno.h>

long runlog_copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, unsigned long len) {
#if defined(__linux__)
    loff_t in = (loff_t)*off_in, out = (loff_t)*off_out;
    ssize_t n = copy_file_range(fd_in, &in, fd_out, &out, (size_t)len, 0);
    *off_in = (int64_t)in;
    *off_out = (int64_t)out;
    return (long)n;
#else
    (void)fd_in; (void)fd_out; (void)len; (void)off_in; (void)off_out;
    errno = ENOSYS;
    return -1;
#endif
}
