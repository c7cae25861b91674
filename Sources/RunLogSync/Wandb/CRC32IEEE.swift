import CCRC32C

/// CRC-32/IEEE (the zlib / Go `crc32.IEEE` checksum: reflected polynomial 0xEDB88320, initial
/// and final XOR 0xFFFFFFFF), as wandb-core's transaction log uses it. Plain, not masked.
/// Computed in C (`CCRC32C`): carry-less multiplication folding where the CPU has PCLMULQDQ,
/// slice-by-8 tables otherwise.
package enum CRC32IEEE {
    /// The CRC of `bytes`, continuing from `crc` (the CRC of what came before; 0 to start).
    package static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        runlog_crc32_ieee_extend(crc, bytes.baseAddress, bytes.count)
    }

    /// The CRC of `bytes`, continuing from `crc`.
    package static func checksum(_ bytes: ArraySlice<UInt8>, continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }

    /// The CRC of `bytes`, continuing from `crc`.
    package static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }

    /// The table-driven path alone (what CPUs without PCLMULQDQ use), for tests.
    package static func portableChecksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { runlog_crc32_ieee_extend_portable(crc, $0.baseAddress, $0.count) }
    }

    /// Whether ``checksum(_:continuing:)`` uses PCLMULQDQ on this CPU.
    package static var isHardware: Bool { runlog_crc32_ieee_is_hardware() != 0 }
}
