import CZstd

/// One-shot zstd compression of frame payloads through the system libzstd.
///
/// A `ZstdContext` reuses its compression and decompression contexts across frames; it is
/// not thread-safe, so each writer and reader owns one.
final class ZstdContext {
    private let cctx: OpaquePointer
    private let dctx: OpaquePointer

    init() {
        cctx = ZSTD_createCCtx()
        dctx = ZSTD_createDCtx()
    }

    deinit {
        ZSTD_freeCCtx(cctx)
        ZSTD_freeDCtx(dctx)
    }

    /// Compresses `input` at `level`, appending to `output`.
    func compress(_ input: UnsafeRawBufferPointer, level: Int32, into output: inout [UInt8]) throws(StoreError) {
        let bound = ZSTD_compressBound(input.count)
        let start = output.count
        output.reserveCapacity(start + bound)
        output.append(contentsOf: repeatElement(0, count: bound))
        let written = output.withUnsafeMutableBytes { out in
            ZSTD_compressCCtx(cctx, out.baseAddress! + start, bound, input.baseAddress, input.count, level)
        }
        if ZSTD_isError(written) != 0 {
            output.removeLast(bound)
            throw StoreError(.ioError, "zstd compression failed: \(String(cString: ZSTD_getErrorName(written)))")
        }
        output.removeLast(bound - written)
    }

    /// Decompresses `input`, which must expand to exactly `rawLength` bytes.
    func decompress(_ input: UnsafeRawBufferPointer, rawLength: Int) throws(DecodeError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: rawLength)
        let n = out.withUnsafeMutableBytes { o in
            ZSTD_decompressDCtx(dctx, o.baseAddress, rawLength, input.baseAddress, input.count)
        }
        if ZSTD_isError(n) != 0 {
            throw DecodeError("zstd: \(String(cString: ZSTD_getErrorName(n)))")
        }
        guard n == rawLength else { throw DecodeError("zstd produced \(n) bytes, header says \(rawLength)") }
        return out
    }

    static var versionString: String { String(cString: ZSTD_versionString()) }
}
