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

    // The groups, as parallel arrays: finding one scans `hashes` (plain integers, no
    // reference counting) and compares key bytes only on a hash match.
    private var keys: [[UInt8]] = []
    private var hashes: [UInt64] = []
    private var lastSets: [Change?] = []
    private var removalsAfter: [[Change]] = []
    /// Groups by key hash, once there are too many to scan.
    private var index: [UInt64: [Int]] = [:]
    private var loose: [Change] = []
    private var count = 0

    /// The next change's place in the file's order (shared with changes kept elsewhere).
    mutating func nextOrder() -> Int {
        count += 1
        return count - 1
    }

    /// The group after each group in the last record that had it, cyclically (the last
    /// change's successor is its record's first): wandb-core writes a record's items from a Go
    /// map, whose walk starts at a random place, so a run's records hold the same keys in
    /// rotations of one order, and guessing the successor of the previous change's group
    /// finds every group but a record's first with one compare.
    private var successor: [Int] = []
    /// The group of the current record's first change, and of its latest (-1 before the
    /// record's first).
    private var firstGroup = -1
    private var lastGroup = -1

    /// Starts a record's changes: the previous record's cycle closes (its first group follows
    /// its last).
    mutating func beginRecord() {
        if lastGroup >= 0, firstGroup >= 0, successor[lastGroup] != firstGroup { successor[lastGroup] = firstGroup }
        lastGroup = -1
    }

    /// Adds a change of the current record whose key fields are `keys` in its record's bytes
    /// (nil when not contiguous).
    mutating func add(_ change: Change, keys keyRange: Range<Int>?) {
        guard let keyRange else {
            loose.append(change)
            return
        }
        let hint = lastGroup < 0 ? firstGroup : successor[lastGroup]
        let g = change.bytes.withUnsafeBufferPointer { b -> Int in
            let key = UnsafeBufferPointer(rebasing: b[keyRange])
            if hint >= 0, Self.equal(keys[hint], key) { return hint }
            var h: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a
            for byte in key { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
            if let found = find(key, hash: h) { return found }
            keys.append(Array(key))
            hashes.append(h)
            lastSets.append(nil)
            removalsAfter.append([])
            successor.append(-1)
            let n = hashes.count
            if n > Self.scanLimit {
                if n == Self.scanLimit + 1 {
                    for (i, hash) in hashes.enumerated() { index[hash, default: []].append(i) }
                } else {
                    index[h, default: []].append(n - 1)
                }
            }
            return n - 1
        }
        // Written only when it changes: a read costs less than a write to the array.
        if lastGroup < 0 { firstGroup = g } else if successor[lastGroup] != g { successor[lastGroup] = g }
        lastGroup = g
        if change.removal {
            removalsAfter[g].append(change)
        } else {
            lastSets[g] = change
            removalsAfter[g].removeAll(keepingCapacity: true)
        }
    }

    /// Groups are found by a scan up to this many (a handful of metrics, the usual case).
    private static let scanLimit = 32

    private static func equal(_ a: [UInt8], _ key: UnsafeBufferPointer<UInt8>) -> Bool {
        a.count == key.count && a.withUnsafeBufferPointer { key.isEmpty || memcmp($0.baseAddress!, key.baseAddress!, key.count) == 0 }
    }

    private func find(_ key: UnsafeBufferPointer<UInt8>, hash: UInt64) -> Int? {
        if hashes.count <= Self.scanLimit {
            return hashes.withUnsafeBufferPointer { hs in
                for i in hs.indices where hs[i] == hash && Self.equal(keys[i], key) { return i }
                return nil
            }
        }
        return index[hash]?.first { Self.equal(keys[$0], key) }
    }

    /// The changes kept, in their original order.
    var changes: [Change] {
        var out = loose
        for g in hashes.indices {
            if let s = lastSets[g] { out.append(s) }
            out += removalsAfter[g]
        }
        return out.sorted { $0.order < $1.order }
    }
}
