import Foundation
import Testing
@testable import RunLog

@Suite("ProjectInference")
struct ProjectInferenceTests {
    @Test("the git root's folder name, found from a nested directory")
    func gitRootFromNestedDirectory() throws {
        let base = try SupportTestKit.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: base) }
        let repo = base.appendingPathComponent("vision-models")
        let nested = repo.appendingPathComponent("src/train")
        try FileManager.default.createDirectory(at: repo.appendingPathComponent(".git"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: nested, withIntermediateDirectories: true)

        #expect(ProjectInference.gitRoot(startingAt: nested) == repo.path)
        #expect(ProjectInference.infer(cwd: nested, programPath: "/usr/bin/train.swift") == "vision-models")
        #expect(ProjectInference.infer(cwd: repo, programPath: nil) == "vision-models")
    }

    @Test("a .git file (worktree or submodule) marks a root too")
    func gitFile() throws {
        let base = try SupportTestKit.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: base) }
        let worktree = base.appendingPathComponent("feature-tree")
        try FileManager.default.createDirectory(at: worktree, withIntermediateDirectories: true)
        try "gitdir: /elsewhere/.git/worktrees/feature-tree\n".write(
            to: worktree.appendingPathComponent(".git"), atomically: true, encoding: .utf8)
        #expect(ProjectInference.infer(cwd: worktree, programPath: "main") == "feature-tree")
    }

    @Test("the nearest root wins for nested repositories")
    func nearestRoot() throws {
        let base = try SupportTestKit.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: base) }
        let outer = base.appendingPathComponent("outer")
        let inner = outer.appendingPathComponent("vendor/inner")
        try FileManager.default.createDirectory(at: outer.appendingPathComponent(".git"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: inner.appendingPathComponent(".git"), withIntermediateDirectories: true)
        #expect(ProjectInference.infer(cwd: inner, programPath: nil) == "inner")
    }

    @Test("outside a repository: the program's name without extension")
    func programName() throws {
        let base = try SupportTestKit.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: base) }
        try #require(ProjectInference.gitRoot(startingAt: base) == nil, "the temporary directory is inside a git repository")
        #expect(ProjectInference.infer(cwd: base, programPath: "/home/me/exp/train_resnet.swift") == "train_resnet")
        #expect(ProjectInference.infer(cwd: base, programPath: "./.build/release/sweep") == "sweep")
        #expect(ProjectInference.infer(cwd: base, programPath: "model.v2.py") == "model.v2")
    }

    @Test("nothing to infer: uncategorized")
    func fallback() throws {
        let base = try SupportTestKit.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: base) }
        try #require(ProjectInference.gitRoot(startingAt: base) == nil)
        #expect(ProjectInference.infer(cwd: base, programPath: nil) == "uncategorized")
        #expect(ProjectInference.infer(cwd: base, programPath: "") == "uncategorized")
        #expect(ProjectInference.infer(cwd: base, programPath: "-") == "uncategorized")
        #expect(ProjectInference.infer(cwd: base, programPath: "/") == "uncategorized")
    }
}
