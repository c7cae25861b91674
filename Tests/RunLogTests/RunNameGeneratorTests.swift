import Testing
@testable import RunLog

@Suite("RunNameGenerator")
struct RunNameGeneratorTests {
    @Test("word lists: 100 distinct lowercase ASCII words each")
    func wordLists() {
        for list in [RunNameGenerator.adjectives, RunNameGenerator.nouns] {
            #expect(list.count == 100)
            #expect(Set(list).count == list.count)
            #expect(list.allSatisfy { !$0.isEmpty && $0.allSatisfy { ("a"..."z").contains($0) } })
        }
    }

    @Test("a name is adjective-noun and a valid run id")
    func shape() throws {
        for _ in 0..<200 {
            let name = RunNameGenerator.random()
            let parts = name.split(separator: "-").map(String.init)
            #expect(parts.count == 2)
            #expect(RunNameGenerator.adjectives.contains(parts[0]))
            #expect(RunNameGenerator.nouns.contains(parts[1]))
            try RunID.validate(name)
        }
    }

    @Test("the same seed gives the same names; different seeds differ")
    func seeded() {
        var a = SupportSeededRNG(seed: 2024)
        var b = SupportSeededRNG(seed: 2024)
        let first = (0..<20).map { _ in RunNameGenerator.random(using: &a) }
        let second = (0..<20).map { _ in RunNameGenerator.random(using: &b) }
        #expect(first == second)
        var c = SupportSeededRNG(seed: 2025)
        let third = (0..<20).map { _ in RunNameGenerator.random(using: &c) }
        #expect(first != third)
    }

    @Test("names vary from run to run")
    func variety() {
        var rng = SupportSeededRNG(seed: 1)
        let names = Set((0..<1000).map { _ in RunNameGenerator.random(using: &rng) })
        // 1000 draws from 10,000 names: about 950 distinct are expected.
        #expect(names.count > 900)
        let adjectives = Set(names.map { $0.split(separator: "-")[0] })
        #expect(adjectives.count > 90)
    }
}
