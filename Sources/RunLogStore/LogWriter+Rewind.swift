extension LogWriter {
    /// Rewinds the run to `step`: live history rows with a step after it move to a new
    /// archived branch (still readable in ``RunContents/archived``), and appends go on after it.
    ///
    /// The rewind is one appended frame holding a ``RewindMarker`` that names the first
    /// archived row, so it is atomic (a crash leaves the frame whole or torn away) and costs
    /// O(log frames) whatever the log's length. Config, tags, metadata and events are not
    /// rewound; the summary is left to the caller (the SDK recomputes it).
    /// - Returns: the marker written.
    /// - Throws: `.invalidArgument` for a negative step; write errors as ``flush()``.
    @discardableResult
    public func rewind(toStep step: Int64) throws(StoreError) -> RewindMarker {
        guard step >= 0 else { throw StoreError(.invalidArgument, "cannot rewind to negative step \(step)", path: logPath) }
        try flush()
        let reader = try LogReader(path: logPath)
        defer { reader.close() }
        let map = try reader.archiveMap()
        let cut = try reader.seekLive(step, after: true, map: map, live: try reader.liveFrames(map))
        let marker = RewindMarker(step: step, branch: map.nextBranch, cut: cut?.position, timestamp: FileSystem.nowMicros())
        try append(.rewind(marker))
        try flush()
        try syncNow()
        return marker
    }
}
