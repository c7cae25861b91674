import CCRC32C

/// CRC32C (Castagnoli). Hardware accelerated with SSE4.2 when the CPU has it.
public enum CRC32C {
    /// The CRC32C of `bytes`, or `crc` extended over them.
    @inlinable
    public static func checksum(_ bytes: some ContiguousBytes, extending crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { runlog_crc32c_extend(crc, $0.baseAddress, $0.count) }
    }

    public static func checksum(_ bytes: UnsafeRawBufferPointer, extending crc: UInt32 = 0) -> UInt32 {
        runlog_crc32c_extend(crc, bytes.baseAddress, bytes.count)
    }

    /// Whether the SSE4.2 path is in use.
    public static var isHardwareAccelerated: Bool { runlog_crc32c_is_hardware() != 0 }
}

public protocol ContiguousBytes {
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}
extension Array: ContiguousBytes where Element == UInt8 {}
extension ArraySlice: ContiguousBytes where Element == UInt8 {}
