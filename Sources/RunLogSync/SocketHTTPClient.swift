#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Foundation
import Synchronization

/// A small HTTP/1.1 client over plain sockets with keep-alive connections, for `http://`
/// servers (a `runlog server` on the machine or the LAN). On Linux, URLSession spends more
/// CPU per request than the whole sync does otherwise (libcurl and dispatch churn); this
/// spends a `write` and a couple of `read`s. `https://` URLs keep using URLSession.
///
/// Each request runs blocking on a thread of its own, never on the caller's executor. A
/// request on a pooled connection that the server closed meanwhile is retried once on a
/// fresh one (the native protocol's requests are idempotent).
final class SocketHTTPClient: Sendable {
    struct Response: Sendable {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]
    }

    struct Failure: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    let host: String
    let port: Int
    let timeout: Double
    private let idle = Mutex<[Int32]>([])

    init(host: String, port: Int, timeout: Double) {
        self.host = host
        self.port = port
        self.timeout = timeout
    }

    deinit { for fd in idle.withLock({ $0 }) { close(fd) } }

    func request(_ method: String, _ path: String, headers: [(String, String)], body: [UInt8] = []) async throws -> Response {
        // A thread of its own: a blocked dispatch worker would hold one of the few threads
        // libdispatch runs per core, and concurrent requests would queue behind it.
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Response, any Error>) in
            Thread.detachNewThread {
                c.resume(with: Result { try self.requestBlocking(method, path, headers: headers, body: body) })
            }
        }
    }

    func requestBlocking(_ method: String, _ path: String, headers: [(String, String)], body: [UInt8]) throws -> Response {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nContent-Length: \(body.count)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "\r\n"
        let message = Array(head.utf8) + body
        if let fd = idle.withLock({ $0.popLast() }) {
            // A pooled connection may have been closed by the server: one retry on a new one.
            if let r = try? exchange(fd, message) { return r }
        }
        return try exchange(try connectSocket(), message)
    }

    /// Sends `message` and reads the response; the connection goes back to the pool when
    /// both sides keep it alive, else it is closed.
    private func exchange(_ fd: Int32, _ message: [UInt8]) throws -> Response {
        var keep = false
        defer { if keep { idle.withLock { $0.append(fd) } } else { close(fd) } }
        try message.withUnsafeBytes { p in
            var off = 0
            while off < p.count {
                let n = send(fd, p.baseAddress! + off, p.count - off, Int32(MSG_NOSIGNAL))
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { throw Failure(message: "send: \(String(cString: strerror(errno)))") }
                off += n
            }
        }
        var reader = Reader(fd: fd)
        let (status, headers) = try reader.head()
        var body: [UInt8]
        if status == 204 || status == 304 || (100..<200).contains(status) {
            body = []  // no body by definition
        } else if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            body = []
            while true {
                let line = try reader.line()
                guard let size = Int(line.split(separator: ";").first.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? "", radix: 16) else {
                    throw Failure(message: "bad chunk size")
                }
                if size == 0 { _ = try reader.line(); break }
                body += try reader.bytes(size)
                _ = try reader.line()
            }
        } else if let length = headers["content-length"].flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) {
            body = try reader.bytes(length)
        } else {
            body = try reader.rest()
            return Response(status: status, headers: headers, body: body)
        }
        keep = headers["connection"]?.lowercased() != "close" && reader.buffered == 0
        return Response(status: status, headers: headers, body: body)
    }

    private func connectSocket() throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else { throw Failure(message: "cannot resolve \(host): \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
            if fd >= 0 {
                var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                if connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { return fd }
                lastError = String(cString: strerror(errno))
                close(fd)
            }
            ai = a.pointee.ai_next
        }
        throw Failure(message: "cannot connect to \(host):\(port): \(lastError)")
    }

    /// Buffered reads from a socket.
    private struct Reader {
        let fd: Int32
        var buffer: [UInt8] = []
        var start = 0
        var buffered: Int { buffer.count - start }

        init(fd: Int32) { self.fd = fd }

        mutating func fill() throws {
            if start > 0 { buffer.removeFirst(start); start = 0 }
            var chunk = [UInt8](repeating: 0, count: 64 * 1024)
            while true {
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
                if n < 0, errno == EINTR { continue }
                guard n > 0 else {
                    throw Failure(message: n == 0 ? "connection closed by the server" : "recv: \(String(cString: strerror(errno)))")
                }
                buffer += chunk[..<n]
                return
            }
        }

        mutating func line() throws -> String {
            while true {
                if let i = buffer[start...].firstIndex(of: 0x0A) {
                    var end = i
                    if end > start, buffer[end - 1] == 0x0D { end -= 1 }
                    let s = String(decoding: buffer[start..<end], as: UTF8.self)
                    start = i + 1
                    return s
                }
                try fill()
            }
        }

        mutating func head() throws -> (Int, [String: String]) {
            let status = try line()
            let parts = status.split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let code = Int(parts[1]) else {
                throw Failure(message: "not an HTTP response: \(status.prefix(80))")
            }
            var headers: [String: String] = [:]
            while true {
                let l = try line()
                if l.isEmpty { break }
                guard let colon = l.firstIndex(of: ":") else { continue }
                headers[l[..<colon].lowercased()] = String(l[l.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
            }
            return (code, headers)
        }

        mutating func bytes(_ n: Int) throws -> [UInt8] {
            while buffered < n { try fill() }
            let out = Array(buffer[start..<start + n])
            start += n
            return out
        }

        mutating func rest() throws -> [UInt8] {
            while true {
                do { try fill() } catch { break }
            }
            let out = Array(buffer[start...])
            start = buffer.count
            return out
        }
    }
}
