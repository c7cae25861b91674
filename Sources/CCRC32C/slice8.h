// Slice-by-8 for a reflected 32-bit CRC (Intel's "slicing-by-8"): eight 256-entry tables,
// eight bytes per step. Shared by the CRC32C and CRC-32/IEEE software paths.
#ifndef RUNLOG_SLICE8_H
#define RUNLOG_SLICE8_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef uint32_t slice8_tables[8][256];

// `t[k][b]`: the CRC register after byte `b` followed by `k` zero bytes.
static inline void slice8_build(slice8_tables t, uint32_t polynomial) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ polynomial : (c >> 1);
        t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = t[0][i];
        for (int k = 1; k < 8; k++) {
            c = t[0][c & 0xFF] ^ (c >> 8);
            t[k][i] = c;
        }
    }
}

// The register `c` (not inverted) after `length` bytes at `p`.
static inline uint32_t slice8_update(const slice8_tables t, uint32_t c, const uint8_t *p, size_t length) {
    while (length >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        v ^= c;
        c = t[7][v & 0xFF] ^ t[6][(v >> 8) & 0xFF] ^ t[5][(v >> 16) & 0xFF] ^ t[4][(v >> 24) & 0xFF] ^
            t[3][(v >> 32) & 0xFF] ^ t[2][(v >> 40) & 0xFF] ^ t[1][(v >> 48) & 0xFF] ^ t[0][(v >> 56) & 0xFF];
        p += 8;
        length -= 8;
    }
    while (length--) c = t[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c;
}

#endif
