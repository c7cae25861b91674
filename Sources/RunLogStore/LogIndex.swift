#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
/// The frame index (`run.idx`): a cache of the frame headers, so opening a long log does not
/// read every header. Always rebuildable from the log alone; a stale, damaged or missing
/// index is ignored. Layout in `FORMAT.md`.
enum LogIndex {
    static let magic: [UInt8] = [0x52, 0x4C, 0x49, 0x58]  // "RLIX"
    static let entrySize = 8 + LogFormat.frameHeaderSize

    /// Writers write an index at close only for logs of at least this many frames: below
    /// it, reading the frame headers costs about what reading the index does, and a run
    /// directory is one file smaller (most runs synced from wandb hold one or two frames).
    static let minimumFrames = 4

    static func write(frames: [FrameInfo], coveredLength: UInt64, directory: String) {
        var w = ByteWriter(capacity: 24 + frames.count * entrySize)
        w.append(magic)
        w.u32(1)
        w.u64(coveredLength)
        w.u32(UInt32(frames.count))
        for f in frames {
            w.u64(f.offset)
            w.append(f.header.encode())
        }
        w.u32(CRC32C.checksum(w.bytes))
        let path = directory + "/" + LogFormat.indexFileName
        let tmp = path + ".tmp"
        do {
            let f = try FileHandleFD(path: tmp, flags: O_WRONLY | O_CREAT | O_TRUNC)
            try f.write(w.bytes, at: 0)
            f.close()
            try FileSystem.rename(tmp, path)
        } catch {
            FileSystem.remove(tmp)  // only a cache
        }
    }

    /// Loads the index if it is whole and agrees with the log's last indexed frame.
    static func load(directory: String, log: FileHandleFD, logSize: UInt64) -> (frames: [FrameInfo], coveredLength: UInt64)? {
        let path = directory + "/" + LogFormat.indexFileName
        guard let f = try? FileHandleFD(path: path, flags: O_RDONLY), let size = try? f.size(), size >= 24, size < 1 << 32,
              let b = try? f.read(at: 0, count: Int(size)) else { return nil }
        defer { f.close() }
        guard b.starts(with: magic), b.readLE(UInt32.self, at: 4) == 1,
              CRC32C.checksum(b[0..<b.count - 4]) == b.readLE(UInt32.self, at: b.count - 4) else { return nil }
        let covered: UInt64 = b.readLE(UInt64.self, at: 8)
        let count = Int(b.readLE(UInt32.self, at: 16))
        guard covered <= logSize, b.count == 20 + count * entrySize + 4 else { return nil }
        var frames: [FrameInfo] = []
        frames.reserveCapacity(count)
        var o = 20
        for _ in 0..<count {
            let offset: UInt64 = b.readLE(UInt64.self, at: o)
            guard case .success(let h) = FrameHeader.parse(b, at: o + 8) else { return nil }
            frames.append(FrameInfo(offset: offset, header: h))
            o += entrySize
        }
        // The last indexed frame must be in the log, byte for byte.
        if let last = frames.last {
            guard last.end == covered, let bytes = try? log.read(at: last.offset, count: LogFormat.frameHeaderSize),
                  case .success(let h) = FrameHeader.parse(bytes), h == last.header else { return nil }
        } else if covered != UInt64(LogFormat.fileHeaderSize) {
            return nil
        }
        return (frames, covered)
    }
}
