import Foundation

/// Small local state files (sync cursors, the wandb import manifest): replaced whole with a
/// temporary file and a rename, so a reader sees the old or the new contents, never a mix.
///
/// They are not forced to the device (no fsync, which Foundation's `Data.write` does even
/// without `.atomic`): each is a hint that the next run checks against the server or the
/// files it describes, so losing the last one to a power cut costs a resend, never data.
package enum LocalFile {
    /// The size of the file at `path`, nil when it cannot be stat'ed. One `stat`: Foundation's
    /// `attributesOfItem` also looks up the owner's and the group's names (the user database,
    /// through nscd or `/etc/passwd`), once per file.
    package static func size(_ path: String) -> Int64? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int64(st.st_size)
    }

    static func replace(_ path: String, with data: Data) throws {
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw error("open", tmp) }
        var failed: Int32 = 0
        data.withUnsafeBytes { b in
            var done = 0
            while done < b.count {
                let n = write(fd, b.baseAddress! + done, b.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    failed = errno
                    return
                }
                done += n
            }
        }
        close(fd)
        if failed != 0 {
            unlink(tmp)
            errno = failed
            throw error("write", tmp)
        }
        guard rename(tmp, path) == 0 else {
            let e = error("rename", path)
            unlink(tmp)
            throw e
        }
    }

    private static func error(_ call: String, _ path: String) -> NSError {
        NSError(domain: NSPOSIXErrorDomain, code: Int(errno),
                userInfo: [NSFilePathErrorKey: path, NSLocalizedDescriptionKey: "\(call) \(path): \(String(cString: strerror(errno)))"])
    }
}
