import Testing
@testable import RunLog

@Suite("RunID")
struct RunIDTests {
    @Test("accepts ordinary ids", arguments: ["abc123", "run-1", "my_run.v2", "ünïcode", "a b", "x", "..."])
    func acceptsOrdinaryIDs(id: String) throws {
        try RunID.validate(id)
    }

    @Test("rejects the empty id")
    func rejectsEmpty() {
        #expect(throws: RunIDError.empty) { try RunID.validate("") }
    }

    @Test("rejects each forbidden character and names it", arguments: ["/", "\\", "#", "?", "%", ":", ";", ",", "'"])
    func rejectsForbiddenCharacters(character: String) {
        let id = "ab" + character + "cd"
        do {
            try RunID.validate(id)
            Issue.record("\(id) was accepted")
        } catch {
            #expect(error == .forbiddenCharacter(id: id, character: Character(character)))
            #expect(error.description.contains("\"\(character)\""))
        }
    }

    @Test("rejects NUL and names it")
    func rejectsNUL() {
        do {
            try RunID.validate("ab\u{0}cd")
            Issue.record("NUL accepted")
        } catch {
            #expect(error == .forbiddenCharacter(id: "ab\u{0}cd", character: "\u{0}"))
            #expect(error.description.contains("NUL"))
            #expect(!error.description.contains("\u{0}"), "the message must stay printable")
        }
    }

    @Test("a combining mark does not hide a slash")
    func combiningMarkAfterSlash() {
        #expect(throws: RunIDError.self) { try RunID.validate("a/\u{301}b") }
    }

    @Test("rejects leading and trailing whitespace, naming it")
    func rejectsSurroundingWhitespace() {
        #expect(throws: RunIDError.leadingWhitespace(id: " abc", character: " ")) { try RunID.validate(" abc") }
        #expect(throws: RunIDError.trailingWhitespace(id: "abc\n", character: "\n")) { try RunID.validate("abc\n") }
        #expect(throws: RunIDError.leadingWhitespace(id: "\tabc", character: "\t")) { try RunID.validate("\tabc") }
        #expect(RunIDError.leadingWhitespace(id: " abc", character: " ").description.contains("space (U+0020)"))
        #expect(RunIDError.trailingWhitespace(id: "abc\n", character: "\n").description.contains("newline (U+000A)"))
    }

    @Test("rejects . and ..")
    func rejectsDotNames() {
        #expect(throws: RunIDError.reservedName(".")) { try RunID.validate(".") }
        #expect(throws: RunIDError.reservedName("..")) { try RunID.validate("..") }
    }

    @Test("rejects ids too long for a directory name")
    func rejectsTooLong() throws {
        try RunID.validate(String(repeating: "a", count: RunID.maxUTF8Count))
        let long = String(repeating: "é", count: RunID.maxUTF8Count / 2 + 1)  // 2 bytes each
        #expect(throws: RunIDError.tooLong(id: long, utf8Count: long.utf8.count)) { try RunID.validate(long) }
    }

    @Test("random ids are 8 lowercase letters or digits, valid, and distinct")
    func randomIDs() throws {
        var seen = Set<String>()
        for _ in 0..<1000 {
            let id = RunID.random()
            #expect(id.count == 8)
            #expect(id.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) })
            try RunID.validate(id)
            seen.insert(id)
        }
        #expect(seen.count == 1000)
    }

    @Test("an injected generator gives a reproducible id")
    func seededIDs() {
        var a = SupportSeededRNG(seed: 42)
        var b = SupportSeededRNG(seed: 42)
        #expect(RunID.random(using: &a) == RunID.random(using: &b))
        var c = SupportSeededRNG(seed: 43)
        var d = SupportSeededRNG(seed: 42)
        #expect(RunID.random(using: &c) != RunID.random(using: &d))
    }

    @Test("generated ids use the whole alphabet")
    func alphabetCoverage() {
        var rng = SupportSeededRNG(seed: 7)
        var used = Set<Character>()
        for _ in 0..<500 { used.formUnion(RunID.random(using: &rng)) }
        #expect(used == Set(RunID.alphabet))
    }
}
