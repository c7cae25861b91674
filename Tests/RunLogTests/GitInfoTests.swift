import Foundation
import Testing
@testable import RunLog

@Suite("GitInfo", .enabled(if: FileManager.default.isExecutableFile(atPath: GitInfo.defaultGitPath)))
struct GitInfoTests {
    /// Runs git in `directory` with a fixed identity and no global configuration.
    @discardableResult
    static func git(_ directory: URL, _ arguments: String...) throws -> String {
        let environment = [
            "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "HOME": directory.path,
            "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
        ]
        let result = try #require(CapturedProcess.run(
            GitInfo.defaultGitPath, ["-C", directory.path, "-c", "init.defaultBranch=main"] + arguments,
            environment: environment))
        try #require(result.status == 0, "git \(arguments.joined(separator: " ")) failed")
        return result.text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A repository with one commit of `train.swift` and an origin with credentials in its URL.
    static func makeRepository() throws -> URL {
        let repo = try SupportTestKit.makeTemporaryDirectory("gitinfo")
        try git(repo, "init", "-q")
        try "let lr = 0.001\n".write(to: repo.appendingPathComponent("train.swift"), atomically: true, encoding: .utf8)
        try git(repo, "add", "train.swift")
        try git(repo, "commit", "-q", "-m", "first")
        try git(repo, "remote", "add", "origin", "https://alice:s3cret-token@github.com/alice/models.git")
        return repo
    }

    @Test("a clean repository: root, origin without credentials, HEAD, branch, empty diff")
    func cleanRepository() throws {
        let repo = try Self.makeRepository()
        defer { try? FileManager.default.removeItem(at: repo) }
        let info = try #require(GitInfo.capture(at: repo))
        #expect(info.root == repo.path)
        #expect(info.remoteURL == "https://github.com/alice/models.git")
        #expect(info.commit == (try Self.git(repo, "rev-parse", "HEAD")))
        #expect(info.commit?.count == 40)
        #expect(info.branch == "main")
        #expect(info.diff.isEmpty)
        #expect(!info.isDirty)
    }

    @Test("uncommitted changes to tracked files are in the diff; untracked files are not")
    func dirtyRepository() throws {
        let repo = try Self.makeRepository()
        defer { try? FileManager.default.removeItem(at: repo) }
        try "let lr = 0.01\n".write(to: repo.appendingPathComponent("train.swift"), atomically: true, encoding: .utf8)
        try "scratch\n".write(to: repo.appendingPathComponent("notes.txt"), atomically: true, encoding: .utf8)
        let sub = repo.appendingPathComponent("sub")
        try FileManager.default.createDirectory(at: sub, withIntermediateDirectories: true)

        let info = try #require(GitInfo.capture(at: sub))  // from a subdirectory
        #expect(info.root == repo.path)
        #expect(info.isDirty)
        #expect(info.diff.contains("diff --git a/train.swift b/train.swift"))
        #expect(info.diff.contains("-let lr = 0.001"))
        #expect(info.diff.contains("+let lr = 0.01"))
        #expect(!info.diff.contains("notes.txt"))
    }

    @Test("staged changes count as dirty too")
    func stagedChanges() throws {
        let repo = try Self.makeRepository()
        defer { try? FileManager.default.removeItem(at: repo) }
        try "print(1)\n".write(to: repo.appendingPathComponent("eval.swift"), atomically: true, encoding: .utf8)
        try Self.git(repo, "add", "eval.swift")
        let info = try #require(GitInfo.capture(at: repo))
        #expect(info.diff.contains("+print(1)"))
    }

    @Test("a repository without commits or origin")
    func emptyRepository() throws {
        let repo = try SupportTestKit.makeTemporaryDirectory("gitinfo-empty")
        defer { try? FileManager.default.removeItem(at: repo) }
        try Self.git(repo, "init", "-q")
        let info = try #require(GitInfo.capture(at: repo))
        #expect(info.commit == nil)
        #expect(info.remoteURL == nil)
        #expect(info.diff.isEmpty)
    }

    @Test("nil outside a repository and when git is missing")
    func notARepository() throws {
        let plain = try SupportTestKit.makeTemporaryDirectory("gitinfo-plain")
        defer { try? FileManager.default.removeItem(at: plain) }
        try #require(ProjectInference.gitRoot(startingAt: plain) == nil)
        #expect(GitInfo.capture(at: plain) == nil)

        let repo = try Self.makeRepository()
        defer { try? FileManager.default.removeItem(at: repo) }
        #expect(GitInfo.capture(at: repo, gitPath: "/nonexistent/bin/git") == nil)
    }

    @Test("credential redaction", arguments: [
        ("https://user:pw@host.com/a/b.git", "https://host.com/a/b.git"),
        ("https://ghp_token@github.com/a/b.git", "https://github.com/a/b.git"),
        ("https://host.com/a@b.git", "https://host.com/a@b.git"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
        ("ssh://git:pw@host:2222/repo", "ssh://host:2222/repo"),
        ("https://host.com/repo", "https://host.com/repo"),
    ])
    func redaction(input: String, expected: String) {
        #expect(GitInfo.redactingCredentials(input) == expected)
    }
}
