import Foundation

/// Summary changes read from `.wandb` records but not decoded: wandb writes the summary
/// after every logged step, so almost every change is overwritten by a later one, and only
/// those that still count at the end of the file are worth decoding.
///
/// A change is located by its item's bytes in its record. Changes are grouped by the bytes of
/// their key fields (equal bytes, same path); a set of a path makes every earlier change of
/// that same path irrelevant (it replaces the value whole), so each group keeps only its last
/// set and the removals after it. Applying the changes kept, in their original order, gives
/// what applying all of them gives. Changes whose key fields are not contiguous are all kept.
struct WandbSummaryChanges {
    /// One change: an item (`SummaryItem`) in a record's bytes.
    struct Change {
        var bytes: [UInt8]
        var item: Range<Int>
        var removal: Bool
        /// The record's number and file offset, for errors.
        var number: Int64
        var offset: Int64
        /// Its place among all changes of the file.
        var order: Int
    }

    private struct Group {
        var key: [UInt8]
        var hash: UInt64
        var lastSet: Change?
        var removalsAfter: [Change] = []
    }

    private var groups: [Group] = []
    /// Groups by key hash, once there are too many to scan.
    private var index: [UInt64: [Int]] = [:]
    private var loose: [Change] = []
    private var count = 0

    /// The next change's place in the file's order (shared with changes kept elsewhere).
    mutating func nextOrder() -> Int {
        count += 1
        return count - 1
    }

    /// The group of the change at each position of the previous record: records of one run
    /// mostly repeat the same keys in the same order, so one compare finds the group.
    private var groupAt: [Int] = []

    /// Adds a change whose key fields are `keys` in its record's bytes (nil when not
    /// contiguous); `position` is its place among its record's changes.
    mutating func add(_ change: Change, keys: Range<Int>?, position: Int) {
        guard let keys else {
            loose.append(change)
            return
        }
        let hint = position < groupAt.count ? groupAt[position] : -1
        let g = change.bytes.withUnsafeBufferPointer { b -> Int in
            let key = UnsafeBufferPointer(rebasing: b[keys])
            if hint >= 0, groups[hint].key.count == key.count,
               groups[hint].key.withUnsafeBufferPointer({ key.isEmpty || memcmp($0.baseAddress!, key.baseAddress!, key.count) == 0 }) {
                return hint
            }
            var h: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a
            for byte in key { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
            if let found = find(key, hash: h) { return found }
            groups.append(Group(key: Array(key), hash: h))
            if groups.count > Self.scanLimit {
                if groups.count == Self.scanLimit + 1 {
                    for (i, group) in groups.enumerated() { index[group.hash, default: []].append(i) }
                } else {
                    index[h, default: []].append(groups.count - 1)
                }
            }
            return groups.count - 1
        }
        if position < groupAt.count { groupAt[position] = g } else if position == groupAt.count { groupAt.append(g) }
        if change.removal {
            groups[g].removalsAfter.append(change)
        } else {
            groups[g].lastSet = change
            groups[g].removalsAfter.removeAll(keepingCapacity: true)
        }
    }

    /// Groups are found by a scan up to this many (a handful of metrics, the usual case).
    private static let scanLimit = 32

    private func find(_ key: UnsafeBufferPointer<UInt8>, hash: UInt64) -> Int? {
        func matches(_ i: Int) -> Bool {
            groups[i].hash == hash && groups[i].key.count == key.count
                && groups[i].key.withUnsafeBufferPointer { key.isEmpty || memcmp($0.baseAddress!, key.baseAddress!, key.count) == 0 }
        }
        if groups.count <= Self.scanLimit {
            return groups.indices.first(where: matches)
        }
        return index[hash]?.first(where: matches)
    }

    /// The changes kept, in their original order.
    var changes: [Change] {
        var out = loose
        for g in groups {
            if let s = g.lastSet { out.append(s) }
            out += g.removalsAfter
        }
        return out.sorted { $0.order < $1.order }
    }
}
