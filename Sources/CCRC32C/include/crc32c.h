#ifndef CCRC32C_H
#define CCRC32C_H

#include <stddef.h>
#include <stdint.h>

/// Extends `crc` (a finished CRC32C value; 0 to start) over `length` bytes at `data`.
/// Uses the SSE4.2 `crc32` instruction when the CPU has it (decided once, at run time),
/// and a table-driven software path otherwise.
uint32_t runlog_crc32c_extend(uint32_t crc, const void *data, size_t length);

/// The portable software path, exposed so tests can check both paths agree.
uint32_t runlog_crc32c_extend_portable(uint32_t crc, const void *data, size_t length);

/// 1 when the hardware path is in use, 0 otherwise.
int runlog_crc32c_is_hardware(void);

/// Extends `crc` (a finished CRC-32/IEEE value, zlib's `crc32`; 0 to start) over `length`
/// bytes at `data`. Uses carry-less multiplication (PCLMULQDQ) when the CPU has it
/// (decided once, at run time), and a table-driven software path otherwise.
uint32_t runlog_crc32_ieee_extend(uint32_t crc, const void *data, size_t length);

/// The portable software path of ``runlog_crc32_ieee_extend``, for tests.
uint32_t runlog_crc32_ieee_extend_portable(uint32_t crc, const void *data, size_t length);

/// 1 when the PCLMULQDQ path is in use, 0 otherwise.
int runlog_crc32_ieee_is_hardware(void);

#endif
