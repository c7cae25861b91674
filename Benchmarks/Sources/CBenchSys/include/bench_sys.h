#ifndef BENCH_SYS_H
#define BENCH_SYS_H
#include <sys/types.h>
#include <stdint.h>

/// copy_file_range(2), which Glibc's Swift module does not export (it needs _GNU_SOURCE).
ssize_t bench_copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len);

#endif
