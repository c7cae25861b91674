#ifndef RUNLOG_SYS_H
#define RUNLOG_SYS_H
#include <stdint.h>
#include <sys/types.h>

/// copy_file_range(2) through glibc (not importable from Swift directly). Returns bytes
/// copied, or -1 with errno set.
long runlog_copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, unsigned long len);

/// strtod(3) in the "C" locale whatever the process's locale (JSON numbers use '.'):
/// correctly rounded, as glibc's strtod is. `text` is NUL-terminated.
double runlog_strtod_c(const char *text, char **end);

#endif
