import Foundation

/// Settings taken from environment variables, as job scripts set them.
///
/// Each setting is read from `RUNLOG_<NAME>`, else from `WANDB_<NAME>`: a `RUNLOG_` variable
/// wins over its `WANDB_` twin, which is then not read at all (an invalid value there is not
/// an error). A variable that is empty or only whitespace counts as unset. Text values lose
/// surrounding whitespace, except ``notes`` (kept as written) and ``runID`` (validated as is).
///
/// | setting | `<NAME>` | accepted values |
/// |---|---|---|
/// | ``mode`` | `MODE` | `online`, `offline`, `disabled`; `dryrun` (→ offline), `run` (→ online) |
/// | (mode) | `DISABLED` | a boolean; true forces ``mode`` to `disabled` whatever `MODE` says |
/// | ``project`` | `PROJECT` | any text |
/// | ``entity`` | `ENTITY` | any text |
/// | ``dir`` | `DIR` | a path |
/// | ``runID`` | `RUN_ID` | a valid run id (``RunID/validate(_:)``) |
/// | ``resume`` | `RESUME` | `allow`, `never`, `must`, `auto`; `true` (→ auto), `false` (→ unset) |
/// | ``apiKey`` | `API_KEY` | any text (never echoed in errors) |
/// | ``baseURL`` | `BASE_URL` | an `http://` or `https://` URL with a host |
/// | ``name`` | `NAME` | any text |
/// | ``notes`` | `NOTES` | any text |
/// | ``tags`` | `TAGS` | comma-separated; items trimmed, empty items dropped |
/// | ``group`` | `RUN_GROUP` | any text |
/// | ``jobType`` | `JOB_TYPE` | any text |
/// | ``silent`` | `SILENT` | a boolean |
/// | ``console`` | `CONSOLE` | `auto`, `off`, `wrap`, `redirect`, `wrap_raw`, `wrap_emu` |
///
/// Booleans: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, any letter case.
/// Keyword values (mode, resume, console) are matched ignoring letter case.
package struct EnvironmentOverrides: Sendable, Equatable {
    /// `online`, `offline` or `disabled`.
    package var mode: String?
    package var project: String?
    package var entity: String?
    package var dir: String?
    package var runID: String?
    /// `allow`, `never`, `must` or `auto`.
    package var resume: String?
    package var apiKey: String?
    package var baseURL: String?
    package var name: String?
    package var notes: String?
    package var tags: [String]?
    package var group: String?
    package var jobType: String?
    package var silent: Bool?
    /// `auto`, `off`, `wrap`, `redirect`, `wrap_raw` or `wrap_emu`.
    package var console: String?

    package init() {}

    /// The overrides `environment` sets, typically `ProcessInfo.processInfo.environment`.
    package static func parse(_ environment: [String: String]) throws(EnvironmentOverrideError) -> EnvironmentOverrides {
        let env = Reader(environment: environment)
        var o = EnvironmentOverrides()
        o.mode = try env.keyword("MODE", [
            "online": "online", "offline": "offline", "disabled": "disabled",
            "dryrun": "offline", "run": "online",
        ])
        if try env.bool("DISABLED") == true { o.mode = "disabled" }
        o.project = env.text("PROJECT")
        o.entity = env.text("ENTITY")
        o.dir = env.text("DIR")
        if let (variable, id) = env.lookup("RUN_ID") {
            do { try RunID.validate(id) } catch {
                throw EnvironmentOverrideError(variable: variable, value: id, expected: "a valid run id: \(error)")
            }
            o.runID = id
        }
        if let resume = try env.keyword("RESUME", [
            "allow": "allow", "never": "never", "must": "must", "auto": "auto", "true": "auto", "false": "",
        ]) {
            o.resume = resume.isEmpty ? nil : resume
        }
        if let (variable, key) = env.lookup("API_KEY") {
            if key.contains(where: \.isWhitespace) {
                throw EnvironmentOverrideError(
                    variable: variable, value: nil, expected: "an API key without whitespace")
            }
            o.apiKey = key
        }
        if let (variable, url) = env.lookup("BASE_URL") {
            guard Self.isHTTPURL(url) else {
                throw EnvironmentOverrideError(
                    variable: variable, value: url, expected: "an http:// or https:// URL with a host")
            }
            o.baseURL = url
        }
        o.name = env.text("NAME")
        o.notes = env.lookup("NOTES")?.value
        if let (_, list) = env.lookup("TAGS") {
            o.tags = list.split(separator: ",")
                .map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty }
        }
        o.group = env.text("RUN_GROUP")
        o.jobType = env.text("JOB_TYPE")
        o.silent = try env.bool("SILENT")
        o.console = try env.keyword("CONSOLE", [
            "auto": "auto", "off": "off", "wrap": "wrap", "redirect": "redirect",
            "wrap_raw": "wrap_raw", "wrap_emu": "wrap_emu",
        ])
        return o
    }

    /// Whether `text` looks like `http(s)://host[...]`.
    static func isHTTPURL(_ text: String) -> Bool {
        let lower = text.lowercased()
        let rest: Substring
        if lower.hasPrefix("https://") { rest = lower.dropFirst(8) }
        else if lower.hasPrefix("http://") { rest = lower.dropFirst(7) }
        else { return false }
        let host = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        return !host.isEmpty && !host.hasPrefix(":") && !text.contains(where: \.isWhitespace)
    }

    /// Looks up `RUNLOG_<NAME>`, then `WANDB_<NAME>`.
    private struct Reader {
        let environment: [String: String]

        /// The variable that sets `name` and its value, skipping empty ones.
        func lookup(_ name: String) -> (variable: String, value: String)? {
            for prefix in ["RUNLOG_", "WANDB_"] {
                let variable = prefix + name
                if let value = environment[variable],
                    !value.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
                {
                    return (variable, value)
                }
            }
            return nil
        }

        /// The value with surrounding whitespace removed.
        func text(_ name: String) -> String? {
            lookup(name)?.value.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        func keyword(_ name: String, _ accepted: KeyValuePairs<String, String>) throws(EnvironmentOverrideError) -> String? {
            guard let (variable, value) = lookup(name) else { return nil }
            let key = value.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
            if let match = accepted.first(where: { $0.key == key }) { return match.value }
            throw EnvironmentOverrideError(
                variable: variable, value: value,
                expected: "one of " + accepted.map(\.key).joined(separator: ", "))
        }

        func bool(_ name: String) throws(EnvironmentOverrideError) -> Bool? {
            guard let (variable, value) = lookup(name) else { return nil }
            switch value.trimmingCharacters(in: .whitespacesAndNewlines).lowercased() {
            case "true", "1", "yes", "on": return true
            case "false", "0", "no", "off": return false
            default:
                throw EnvironmentOverrideError(
                    variable: variable, value: value, expected: "a boolean (true/false, 1/0, yes/no, on/off)")
            }
        }
    }
}

/// An environment variable with a value RunLog cannot use. The description names the variable.
package struct EnvironmentOverrideError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The variable, e.g. `WANDB_MODE`.
    package var variable: String
    /// The rejected value; nil for secrets, which are never repeated.
    package var value: String?
    /// What the variable accepts.
    package var expected: String

    package var description: String {
        if let value {
            return "environment variable \(variable)=\"\(value)\" is invalid: expected \(expected)"
        }
        return "environment variable \(variable) is invalid: expected \(expected)"
    }
}
