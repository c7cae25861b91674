#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CRunLogSys

/// A thin owner of a file descriptor. All `errno` handling goes through `StoreError.system`.
final class FileHandleFD: @unchecked Sendable {
    let fd: Int32
    let path: String
    private var closed = false

    init(path: String, flags: Int32, mode: mode_t = 0o644) throws(StoreError) {
        let fd = path.withCString { Glibc.open($0, flags | O_CLOEXEC, mode) }
        guard fd >= 0 else { throw StoreError.system("open", path: path, errno: errno) }
        self.fd = fd
        self.path = path
    }

    deinit { if !closed { Glibc.close(fd) } }

    func close() {
        if !closed { Glibc.close(fd); closed = true }
    }

    func size() throws(StoreError) -> UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw StoreError.system("fstat", path: path, errno: errno) }
        return UInt64(st.st_size)
    }

    /// Reads up to `count` bytes at `offset`; fewer only at end of file.
    func read(at offset: UInt64, count: Int) throws(StoreError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.system("read", path: path, errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        if done < count { out.removeLast(count - done) }
        return out
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(StoreError) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.system("write", path: path, errno: errno)
            }
            done += n
        }
    }

    func write(_ bytes: [UInt8], at offset: UInt64) throws(StoreError) {
        let result = bytes.withUnsafeBytes { b in Result { () throws(StoreError) in try write(b, at: offset) } }
        try result.get()
    }

    func sync() throws(StoreError) {
        #if canImport(Glibc)
        guard fdatasync(fd) == 0 else { throw StoreError.system("fdatasync", path: path, errno: errno) }
        #else
        guard fsync(fd) == 0 else { throw StoreError.system("fsync", path: path, errno: errno) }
        #endif
    }

    func truncate(to length: UInt64) throws(StoreError) {
        guard ftruncate(fd, off_t(length)) == 0 else { throw StoreError.system("ftruncate", path: path, errno: errno) }
    }

    /// Takes an exclusive `flock` without waiting; false when another open file holds it.
    func tryLock() throws(StoreError) -> Bool {
        if flock(fd, LOCK_EX | LOCK_NB) == 0 { return true }
        if errno == EWOULDBLOCK { return false }
        throw StoreError.system("flock", path: path, errno: errno)
    }
}

enum FileSystem {
    static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates `path` and any missing parents.
    static func makeDirectory(_ path: String) throws(StoreError) {
        if mkdir(path, 0o755) == 0 || errno == EEXIST { return }
        if errno == ENOENT, !path.isEmpty, path != "/" {
            let parent = FileSystem.parent(of: path)
            if parent != path {
                try makeDirectory(parent)
                if mkdir(path, 0o755) == 0 || errno == EEXIST { return }
            }
        }
        throw StoreError.system("mkdir", path: path, errno: errno)
    }

    static func rename(_ from: String, _ to: String) throws(StoreError) {
        guard Glibc.rename(from, to) == 0 else { throw StoreError.system("rename", path: from, errno: errno) }
    }

    static func remove(_ path: String) { unlink(path) }

    /// Makes a rename or a new file in `directory` durable.
    static func syncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Copies `count` bytes from `src` at `srcOffset` to `dst` at `dstOffset`, in the kernel where it can.
    static func copyRange(from src: FileHandleFD, at srcOffset: UInt64, to dst: FileHandleFD, at dstOffset: UInt64, count: UInt64) throws(StoreError) {
        var inOff = Int64(srcOffset)
        var outOff = Int64(dstOffset)
        var left = Int(count)
        while left > 0 {
            let n = runlog_copy_file_range(src.fd, &inOff, dst.fd, &outOff, UInt(left))
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP { break }
                throw StoreError.system("copy_file_range", path: dst.path, errno: errno)
            }
            if n == 0 { break }
            left -= Int(n)
        }
        // Fallback (or the rest after a short copy): plain reads and writes in 1 MiB pieces.
        while left > 0 {
            let chunk = try src.read(at: UInt64(inOff), count: min(left, 1 << 20))
            guard !chunk.isEmpty else { throw StoreError(.ioError, "source ended early while copying", path: src.path) }
            try dst.write(chunk, at: UInt64(outOff))
            inOff += Int64(chunk.count)
            outOff += Int64(chunk.count)
            left -= chunk.count
        }
    }

    static func nowMicros() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
    }

    static func monotonicNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// The 32-byte file header.
struct FileHeader: Sendable, Hashable {
    var major: UInt16 = LogFormat.majorVersion
    var minor: UInt16 = LogFormat.minorVersion
    var created: Int64

    func encode() -> [UInt8] {
        var w = ByteWriter(capacity: LogFormat.fileHeaderSize)
        w.append(LogFormat.fileMagic)
        w.u16(major)
        w.u16(minor)
        w.u32(UInt32(LogFormat.fileHeaderSize))
        w.u64(UInt64(bitPattern: created))
        w.u32(0)
        w.u32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    /// Parses a header. A file shorter than a header that starts like one (or is empty) is
    /// a log torn while being created, reported as `nil`.
    static func parse(_ b: [UInt8], path: String) throws(StoreError) -> FileHeader? {
        let magic = LogFormat.fileMagic
        let prefix = min(b.count, magic.count)
        guard b[0..<prefix].elementsEqual(magic[0..<prefix]) else {
            throw StoreError(.notARunLog, "the file does not start with the RunLog magic", path: path, offset: 0)
        }
        if b.count < LogFormat.fileHeaderSize { return nil }
        guard CRC32C.checksum(b[0..<28]) == b.readLE(UInt32.self, at: 28) else {
            throw StoreError(.corrupted, "file header checksum mismatch", path: path, offset: 0)
        }
        let major: UInt16 = b.readLE(UInt16.self, at: 8)
        guard major <= LogFormat.majorVersion else {
            throw StoreError(.unsupportedVersion, "the log is format version \(major); this RunLog reads up to \(LogFormat.majorVersion): upgrade RunLog", path: path)
        }
        return FileHeader(major: major, minor: b.readLE(UInt16.self, at: 10), created: b.readLE(Int64.self, at: 16))
    }
}
