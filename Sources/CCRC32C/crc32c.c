// CRC32C (Castagnoli, reflected polynomial 0x82F63B78).
// Hardware path: SSE4.2 `crc32` instruction, three interleaved streams are not worth
// the complexity here (CRC is 2-4% of the write path); one 8-byte stream is used.
// The hardware function is compiled with a target attribute and chosen at run time,
// so the package needs no -msse4.2 or unsafe flags.
#include "crc32c.h"
#include "slice8.h"
#include <string.h>

static slice8_tables table;
static int table_ready = 0;

uint32_t runlog_crc32c_extend_portable(uint32_t crc, const void *data, size_t length) {
    if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE)) {
        slice8_build(table, 0x82F63B78u);
        __atomic_store_n(&table_ready, 1, __ATOMIC_RELEASE);
    }
    return ~slice8_update(table, ~crc, (const uint8_t *)data, length);
}

#if defined(__x86_64__)
#include <nmmintrin.h>
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const void *data, size_t length) {
    const uint8_t *p = (const uint8_t *)data;
    uint64_t c = (uint32_t)~crc;
    while (length && ((uintptr_t)p & 7)) { c = _mm_crc32_u8((uint32_t)c, *p++); length--; }
    while (length >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        length -= 8;
    }
    while (length--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#endif

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);
static crc_fn chosen = 0;

static crc_fn choose(void) {
    crc_fn f = runlog_crc32c_extend_portable;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) f = crc32c_sse42;
#endif
    __atomic_store_n(&chosen, f, __ATOMIC_RELEASE);
    return f;
}

uint32_t runlog_crc32c_extend(uint32_t crc, const void *data, size_t length) {
    crc_fn f = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (!f) f = choose();
    return f(crc, data, length);
}

int runlog_crc32c_is_hardware(void) {
    crc_fn f = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (!f) f = choose();
    return f != runlog_crc32c_extend_portable;
}
