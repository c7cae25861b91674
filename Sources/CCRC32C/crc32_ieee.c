// CRC-32/IEEE (zlib's crc32: reflected polynomial 0xEDB88320, initial and final XOR
// 0xFFFFFFFF), the checksum of wandb's transaction log records.
//
// Hardware path: carry-less multiplication (PCLMULQDQ) folding, after Gopal et al.,
// "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ Instruction" (Intel, 2009):
// four 128-bit lanes fold 64 bytes per step, are folded into one lane, which takes the
// remaining 16-byte blocks, and the 128-bit remainder is reduced to 32 bits (Barrett).
// The constants are powers of x modulo the polynomial, bit-reflected:
//   k1 = x^(4*128+32) mod P, k2 = x^(4*128-32) mod P   (fold by 64 bytes)
//   k3 = x^(128+32) mod P,   k4 = x^(128-32) mod P     (fold by 16 bytes)
//   k5 = x^64 mod P; mu = floor(x^64 / P); P itself (33 bits).
// Like the CRC32C path, the function is compiled with a target attribute and chosen at
// run time, so the package needs no -mpclmul or unsafe flags. Bytes before and after the
// 16-byte blocks go through the table path.
#include "crc32c.h"
#include "slice8.h"

static slice8_tables table;
static int table_ready = 0;

// On the register value (pre- and post-inversion left to the caller).
static uint32_t slice8(uint32_t c, const uint8_t *p, size_t length) {
    if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE)) {
        slice8_build(table, 0xEDB88320u);
        __atomic_store_n(&table_ready, 1, __ATOMIC_RELEASE);
    }
    return slice8_update(table, c, p, length);
}

uint32_t runlog_crc32_ieee_extend_portable(uint32_t crc, const void *data, size_t length) {
    return ~slice8(~crc, (const uint8_t *)data, length);
}

#if defined(__x86_64__)
#include <emmintrin.h>
#include <smmintrin.h>
#include <wmmintrin.h>

#define FOLD_TARGET __attribute__((target("pclmul,sse4.1")))

// a·k.lo ⊕ a.hi·k.hi ⊕ b: one 128-bit lane moved forward over the distance k encodes.
FOLD_TARGET static inline __m128i fold(__m128i a, __m128i k, __m128i b) {
    __m128i lo = _mm_clmulepi64_si128(a, k, 0x00);
    __m128i hi = _mm_clmulepi64_si128(a, k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(lo, hi), b);
}

// `length` ≥ 64 and a multiple of 16; `c` is the register value.
FOLD_TARGET static uint32_t fold_blocks(uint32_t c, const uint8_t *p, size_t length) {
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596LL, 0x0154442bd4LL);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009eLL, 0x01751997d0LL);
    const __m128i k5 = _mm_set_epi64x(0, 0x0163cd6124LL);
    const __m128i poly = _mm_set_epi64x(0x01f7011641LL, 0x01db710641LL);
    const __m128i low32 = _mm_setr_epi32(~0, 0, ~0, 0);

    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 0));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x4 = _mm_loadu_si128((const __m128i *)(p + 48));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)c));
    p += 64;
    length -= 64;
    while (length >= 64) {
        x1 = fold(x1, k1k2, _mm_loadu_si128((const __m128i *)(p + 0)));
        x2 = fold(x2, k1k2, _mm_loadu_si128((const __m128i *)(p + 16)));
        x3 = fold(x3, k1k2, _mm_loadu_si128((const __m128i *)(p + 32)));
        x4 = fold(x4, k1k2, _mm_loadu_si128((const __m128i *)(p + 48)));
        p += 64;
        length -= 64;
    }
    // Four lanes into one, then the remaining 16-byte blocks.
    x1 = fold(x1, k3k4, x2);
    x1 = fold(x1, k3k4, x3);
    x1 = fold(x1, k3k4, x4);
    while (length >= 16) {
        x1 = fold(x1, k3k4, _mm_loadu_si128((const __m128i *)p));
        p += 16;
        length -= 16;
    }
    // 128 bits to 64.
    __m128i t = _mm_clmulepi64_si128(x1, k3k4, 0x10);
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), t);
    t = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, low32);
    x1 = _mm_clmulepi64_si128(x1, k5, 0x00);
    x1 = _mm_xor_si128(x1, t);
    // Barrett reduction to 32 bits.
    t = _mm_and_si128(x1, low32);
    t = _mm_clmulepi64_si128(t, poly, 0x10);
    t = _mm_and_si128(t, low32);
    t = _mm_clmulepi64_si128(t, poly, 0x00);
    x1 = _mm_xor_si128(x1, t);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}

static uint32_t crc32_ieee_pclmul(uint32_t crc, const void *data, size_t length) {
    const uint8_t *p = (const uint8_t *)data;
    uint32_t c = ~crc;
    if (length >= 64) {
        size_t blocks = length & ~(size_t)15;
        c = fold_blocks(c, p, blocks);
        p += blocks;
        length -= blocks;
    }
    return ~slice8(c, p, length);
}
#endif

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);
static crc_fn chosen = 0;

static crc_fn choose(void) {
    crc_fn f = runlog_crc32_ieee_extend_portable;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1")) f = crc32_ieee_pclmul;
#endif
    __atomic_store_n(&chosen, f, __ATOMIC_RELEASE);
    return f;
}

uint32_t runlog_crc32_ieee_extend(uint32_t crc, const void *data, size_t length) {
    crc_fn f = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (!f) f = choose();
    return f(crc, data, length);
}

int runlog_crc32_ieee_is_hardware(void) {
    crc_fn f = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (!f) f = choose();
    return f != runlog_crc32_ieee_extend_portable;
}
