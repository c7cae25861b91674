import Foundation

/// The git state saved with a run when `saveCode` is on: where the code came from, which
/// commit it was, and the uncommitted changes on top of it.
package struct GitInfo: Sendable, Equatable, Codable {
    /// The repository's top-level directory (`git rev-parse --show-toplevel`).
    package var root: String
    /// The URL of the `origin` remote without credentials; nil when there is no origin.
    package var remoteURL: String?
    /// The full hash of `HEAD`; nil in a repository without commits.
    package var commit: String?
    /// The checked-out branch; nil on a detached `HEAD`.
    package var branch: String?
    /// `git diff HEAD`: staged and unstaged changes to tracked files, as a patch. Untracked
    /// files are not included. Empty when the work tree is clean or there is no commit yet.
    package var diff: String

    /// True when tracked files differ from `HEAD`.
    package var isDirty: Bool { !diff.isEmpty }

    package init(root: String, remoteURL: String?, commit: String?, branch: String?, diff: String) {
        self.root = root
        self.remoteURL = remoteURL
        self.commit = commit
        self.branch = branch
        self.diff = diff
    }

    /// The default git executable.
    package static let defaultGitPath = "/usr/bin/git"

    /// Captures the git state of the repository containing `directory`, or nil when it is not
    /// inside a git work tree or git cannot be run.
    ///
    /// Runs git read-only: optional locks are disabled so a concurrent `git` in the user's
    /// shell is never blocked, and no prompt can appear.
    package static func capture(at directory: URL, gitPath: String = defaultGitPath) -> GitInfo? {
        var environment = ProcessInfo.processInfo.environment
        environment["GIT_OPTIONAL_LOCKS"] = "0"
        environment["GIT_TERMINAL_PROMPT"] = "0"
        environment["LC_ALL"] = "C"
        // Ask about `directory`, not about a repository an inherited variable points at.
        for name in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"] {
            environment[name] = nil
        }
        func git(_ arguments: String...) -> String? {
            guard let result = CapturedProcess.run(
                gitPath, ["-C", directory.path] + arguments, environment: environment, timeout: 30),
                result.status == 0
            else { return nil }
            return result.text
        }
        func line(_ text: String?) -> String? {
            guard let value = text?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty
            else { return nil }
            return value
        }

        guard let root = line(git("rev-parse", "--show-toplevel")) else { return nil }
        let commit = line(git("rev-parse", "--verify", "--quiet", "HEAD"))
        let branch = line(git("symbolic-ref", "--quiet", "--short", "HEAD"))
        let remote = line(git("remote", "get-url", "origin")).map(redactingCredentials)
        let diff = commit == nil
            ? "" : (git("diff", "--no-color", "--no-ext-diff", "HEAD") ?? "")
        return GitInfo(root: root, remoteURL: remote, commit: commit, branch: branch, diff: diff)
    }

    /// `url` without the user info of a URL-form remote, where tokens live
    /// (`https://user:token@host/x` and `https://token@host/x` become `https://host/x`);
    /// scp-like remotes (`git@host:x`) are returned unchanged.
    package static func redactingCredentials(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let afterScheme = url[schemeEnd.upperBound...]
        let authorityEnd = afterScheme.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" })
            ?? afterScheme.endIndex
        guard let at = afterScheme[..<authorityEnd].lastIndex(of: "@") else { return url }
        return String(url[..<schemeEnd.upperBound]) + String(url[url.index(after: at)...])
    }
}
