#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// An HTTP/1.1 proxy between `runlog sync` and `runlog server` that misbehaves on purpose.
///
/// One request per client connection (it forwards `Connection: close` both ways, so the
/// client opens a new connection per request). For each request it draws, from a seeded
/// generator, whether to pass it through or to inject one fault:
///
/// - `tooMany0` / `tooMany1`: answer `429` with `Retry-After: 0` / `1` without forwarding;
/// - `resetBeforeForward`: read the request, then reset the client connection (the server never sees it);
/// - `truncateRequest`: forward the head and part of the body, then reset both connections;
/// - `dropResponse`: forward the whole request, read the server's whole answer, then reset the
///   client connection without sending it (the server stored the frames; the client does not know);
/// - `truncateResponse`: as `dropResponse`, but send part of the answer first.
final class FaultProxy: @unchecked Sendable {
    enum Fault: String, CaseIterable, Sendable {
        case none, tooMany0, tooMany1, resetBeforeForward, truncateRequest, dropResponse, truncateResponse
    }

    let port: UInt16
    let upstreamPort: UInt16
    /// Probability that a request gets a fault (split evenly between the kinds).
    let faultRate: Double
    private let listenFD: Int32
    private let lock = NSLock()
    private var rng: SeededRandom
    private var counts: [Fault: Int] = [:]
    private var postCounts: [Fault: Int] = [:]
    private var errors: [String] = []
    private var stopped = false
    private var inFlight = 0

    init(upstreamPort: UInt16, seed: UInt64, faultRate: Double) throws {
        self.upstreamPort = upstreamPort
        self.faultRate = faultRate
        rng = SeededRandom(seed: seed)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXFailure(call: "socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 128) == 0 else { close(fd); throw POSIXFailure(call: "bind/listen") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = UInt16(bigEndian: addr.sin_port)
        listenFD = fd
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// How many requests got each fault (`none`: passed through).
    var faultCounts: [Fault: Int] { lock.withLock { counts } }
    /// The same for `POST` requests (frame uploads) only.
    var postFaultCounts: [Fault: Int] { lock.withLock { postCounts } }
    /// Requests the proxy could not handle as planned (a bug in the test, not in RunLog).
    var proxyErrors: [String] { lock.withLock { errors } }

    /// Stops accepting and waits (up to 10 s) for connections in flight.
    func stop() {
        let first = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
        poll(timeout: 10) { lock.withLock { inFlight == 0 } }
    }

    deinit { stop() }

    // MARK: Connections

    private func acceptLoop() {
        while true {
            let client = accept(listenFD, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            if lock.withLock({ stopped }) {
                close(client)
                return
            }
            lock.withLock { inFlight += 1 }
            Thread.detachNewThread { [self] in
                handle(client)
                lock.withLock { inFlight -= 1 }
            }
        }
    }

    private func draw() -> (Fault, Int) {
        lock.withLock {
            let r = Double.random(in: 0..<1, using: &rng)
            let cut = Int.random(in: 0..<1_000_000, using: &rng)
            guard r < faultRate else { return (.none, cut) }
            let kinds = Fault.allCases.filter { $0 != .none }
            return (kinds[Int(r / faultRate * Double(kinds.count))], cut)
        }
    }

    private func note(_ fault: Fault, post: Bool) {
        lock.withLock {
            counts[fault, default: 0] += 1
            if post { postCounts[fault, default: 0] += 1 }
        }
    }

    private func fail(_ message: String) { lock.withLock { errors.append(message) } }

    private func handle(_ client: Int32) {
        setTimeouts(client)
        guard let request = readRequest(client) else {
            close(client)
            return
        }
        let (fault, cut) = draw()
        let isPost = request.head.hasPrefix("POST ")
        note(fault, post: isPost)
        switch fault {
        case .tooMany0, .tooMany1:
            let body = #"{"error":"injected: too many requests"}"#
            let answer = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: \(fault == .tooMany0 ? 0 : 1)\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
            _ = sendAll(client, Array(answer.utf8))
            shutdown(client, Int32(SHUT_WR))
            close(client)
            return
        case .resetBeforeForward:
            reset(client)
            return
        default:
            break
        }
        let upstream = connectUpstream()
        guard upstream >= 0 else {
            fail("cannot connect to the server on port \(upstreamPort): \(String(cString: strerror(errno)))")
            reset(client)
            return
        }
        setTimeouts(upstream)
        let head = Array(Self.rewrite(head: request.head).utf8)
        if fault == .truncateRequest {
            // Part of the request, never all of it: the server must store nothing from it.
            let whole = head + request.body
            let n = request.body.isEmpty ? cut % head.count : head.count + cut % request.body.count
            _ = sendAll(upstream, Array(whole[..<n]))
            reset(upstream)
            reset(client)
            return
        }
        guard sendAll(upstream, head + request.body) else {
            fail("cannot send to the server: \(String(cString: strerror(errno)))")
            reset(upstream)
            reset(client)
            return
        }
        let response = readResponse(upstream)
        close(upstream)
        guard let split = Self.headEnd(response) else {
            fail("the server's answer has no complete head (\(response.count) bytes)")
            reset(client)
            return
        }
        switch fault {
        case .dropResponse:
            reset(client)
        case .truncateResponse:
            // Anything short of the whole answer: cut in the head or in the body.
            let n = response.count > 1 ? 1 + cut % (response.count - 1) : 0
            _ = sendAll(client, Array(response[..<n]))
            reset(client)
        default:
            let newHead = Self.rewrite(head: String(decoding: response[..<split], as: UTF8.self))
            _ = sendAll(client, Array(newHead.utf8) + Array(response[(split + 4)...]))
            shutdown(client, Int32(SHUT_WR))
            close(client)
        }
    }

    // MARK: HTTP framing

    struct Request {
        var head: String  // without the final blank line
        var body: [UInt8]
    }

    /// Reads one request: the head, then `Content-Length` bytes of body. Answers
    /// `Expect: 100-continue` itself (and drops the header).
    private func readRequest(_ fd: Int32) -> Request? {
        var buffer = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        var end: Int?
        while end == nil {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { return nil }
            buffer += chunk[..<n]
            end = Self.headEnd(buffer)
            if end == nil && buffer.count > 1 << 20 { fail("request head over 1 MiB"); return nil }
        }
        let split = end!
        let head = String(decoding: buffer[..<split], as: UTF8.self)
        var body = Array(buffer[(split + 4)...])
        let fields = Self.fields(head)
        if fields["transfer-encoding"] != nil { fail("chunked request bodies are not handled: \(head)"); return nil }
        if fields["expect"]?.lowercased() == "100-continue" {
            guard sendAll(fd, Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) else { return nil }
        }
        let length = Int(fields["content-length"] ?? "0") ?? 0
        while body.count < length {
            let n = recv(fd, &chunk, min(chunk.count, length - body.count), 0)
            if n <= 0 { return nil }
            body += chunk[..<n]
        }
        return Request(head: head, body: body)
    }

    static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i
        }
        return nil
    }

    static func fields(_ head: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in head.split(separator: "\r\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            out[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return out
    }

    /// The head with `Connection: close` instead of any connection management (and without `Expect`).
    static func rewrite(head: String) -> String {
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let kept = lines.enumerated().filter { i, line in
            guard i > 0 else { return true }
            let name = line.split(separator: ":", maxSplits: 1).first?.lowercased() ?? ""
            return !["connection", "keep-alive", "expect", "proxy-connection"].contains(name)
        }.map { String($0.1) }
        return (kept + ["Connection: close"]).joined(separator: "\r\n") + "\r\n\r\n"
    }

    // MARK: Sockets

    private func setTimeouts(_ fd: Int32) {
        var tv = timeval(tv_sec: 60, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    private func connectUpstream() -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = upstreamPort.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if r != 0 {
            close(fd)
            return -1
        }
        return fd
    }

    private func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// Reads one response: the head, then `Content-Length` bytes of body, or to the end of
    /// the stream when there is no length.
    private func readResponse(_ fd: Int32) -> [UInt8] {
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        var wanted: Int?
        while wanted.map({ out.count < $0 }) ?? true {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return out }
            out += chunk[..<n]
            if wanted == nil, let end = Self.headEnd(out) {
                let fields = Self.fields(String(decoding: out[..<end], as: UTF8.self))
                if let length = fields["content-length"].flatMap({ Int($0) }) { wanted = end + 4 + length }
            }
        }
        return out
    }

    /// Closes with a TCP reset (SO_LINGER 0): the peer sees ECONNRESET, not a clean end.
    private func reset(_ fd: Int32) {
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }
}
