#define _GNU_SOURCE
#include "runlog_sys.h"
#include <unistd.h>
#include <errno.h>
#include <stdlib.h>
#include <locale.h>
#if defined(__APPLE__)
#include <xlocale.h>
#endif

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

double runlog_strtod_c(const char *text, char **end) {
    static locale_t c_locale;
    locale_t loc = __atomic_load_n(&c_locale, __ATOMIC_ACQUIRE);
    if (!loc) {
        locale_t fresh = newlocale(LC_ALL_MASK, "C", (locale_t)0);
        locale_t expected = (locale_t)0;
        if (!__atomic_compare_exchange_n(&c_locale, &expected, fresh, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            freelocale(fresh);
            loc = expected;
        } else {
            loc = fresh;
        }
    }
    return strtod_l(text, end, loc);
}
