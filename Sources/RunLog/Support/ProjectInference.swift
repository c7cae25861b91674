import Foundation

/// Infers a project name when `init` is given none.
///
/// In order: the folder name of the git repository that contains the working directory
/// (found by walking up to the first directory holding a `.git` entry, file or directory),
/// else the program's file name without its extension, else ``fallback``.
package enum ProjectInference {
    /// The project used when nothing can be inferred.
    package static let fallback = "uncategorized"

    /// The inferred project name for a process working in `cwd` that runs `programPath`
    /// (typically `CommandLine.arguments.first`).
    package static func infer(cwd: URL, programPath: String?) -> String {
        if let root = gitRoot(startingAt: cwd) {
            let name = (root as NSString).lastPathComponent
            if isUsable(name) { return name }
        }
        if let programPath, let name = programName(programPath) {
            return name
        }
        return fallback
    }

    /// The nearest directory at or above `directory` that holds a `.git` entry (a directory in
    /// a normal checkout, a file in a worktree or submodule), or nil when there is none.
    package static func gitRoot(startingAt directory: URL) -> String? {
        var path = directory.standardizedFileURL.path
        let fileManager = FileManager.default
        while true {
            let candidate = path == "/" ? "/.git" : path + "/.git"
            if fileManager.fileExists(atPath: candidate) { return path }
            let parent = (path as NSString).deletingLastPathComponent
            if parent.isEmpty || parent == path { return nil }
            path = parent
        }
    }

    /// The file name of `programPath` without its extension, or nil when that leaves nothing
    /// usable (an empty path, `-` for standard input, `/`).
    package static func programName(_ programPath: String) -> String? {
        let trimmed = programPath.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty, trimmed != "-" else { return nil }
        let file = (trimmed as NSString).lastPathComponent
        let stem = (file as NSString).deletingPathExtension
        let name = stem.isEmpty ? file : stem
        return isUsable(name) ? name : nil
    }

    private static func isUsable(_ name: String) -> Bool {
        !name.isEmpty && name != "/" && name != "." && name != ".."
            && !name.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
    }
}
