import Testing
@testable import RunLog

@Suite("EnvironmentOverrides")
struct EnvironmentOverridesTests {
    @Test("an empty or unrelated environment sets nothing")
    func empty() throws {
        #expect(try EnvironmentOverrides.parse([:]) == EnvironmentOverrides())
        #expect(try EnvironmentOverrides.parse(["PATH": "/usr/bin", "HOME": "/root"]) == EnvironmentOverrides())
    }

    @Test("reads every WANDB_ variable a job script sets")
    func wandbVariables() throws {
        let o = try EnvironmentOverrides.parse([
            "WANDB_MODE": "offline", "WANDB_PROJECT": "vision", "WANDB_ENTITY": "lab",
            "WANDB_DIR": "/scratch/runs", "WANDB_RUN_ID": "abc123", "WANDB_RESUME": "allow",
            "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567",
            "WANDB_BASE_URL": "https://wandb.example.org", "WANDB_NAME": "fold-3",
            "WANDB_NOTES": "  lr sweep, second pass\n", "WANDB_TAGS": "baseline, resnet ,, fp16",
            "WANDB_RUN_GROUP": "cv-5fold", "WANDB_JOB_TYPE": "train", "WANDB_SILENT": "true",
            "WANDB_CONSOLE": "wrap",
        ])
        #expect(o.mode == "offline")
        #expect(o.project == "vision")
        #expect(o.entity == "lab")
        #expect(o.dir == "/scratch/runs")
        #expect(o.runID == "abc123")
        #expect(o.resume == "allow")
        #expect(o.apiKey == "0123456789abcdef0123456789abcdef01234567")
        #expect(o.baseURL == "https://wandb.example.org")
        #expect(o.name == "fold-3")
        #expect(o.notes == "  lr sweep, second pass\n")  // notes kept as written
        #expect(o.tags == ["baseline", "resnet", "fp16"])
        #expect(o.group == "cv-5fold")
        #expect(o.jobType == "train")
        #expect(o.silent == true)
        #expect(o.console == "wrap")
    }

    @Test("RUNLOG_X wins over WANDB_X, and the shadowed variable is not read")
    func precedence() throws {
        let o = try EnvironmentOverrides.parse([
            "RUNLOG_PROJECT": "runlog-project", "WANDB_PROJECT": "wandb-project",
            "RUNLOG_MODE": "online", "WANDB_MODE": "banana",
            "RUNLOG_TAGS": "a", "WANDB_TAGS": "b,c",
            "WANDB_ENTITY": "only-wandb",
        ])
        #expect(o.project == "runlog-project")
        #expect(o.mode == "online")
        #expect(o.tags == ["a"])
        #expect(o.entity == "only-wandb")
    }

    @Test("empty values count as unset")
    func emptyValues() throws {
        let o = try EnvironmentOverrides.parse(["RUNLOG_PROJECT": "", "WANDB_PROJECT": "p", "WANDB_MODE": "  ", "WANDB_NAME": " n "])
        #expect(o.project == "p")
        #expect(o.mode == nil)
        #expect(o.name == "n")
    }

    @Test("mode aliases and letter case", arguments: [
        ("online", "online"), ("OFFLINE", "offline"), ("disabled", "disabled"), ("dryrun", "offline"), ("run", "online"),
    ])
    func modes(value: String, expected: String) throws {
        #expect(try EnvironmentOverrides.parse(["WANDB_MODE": value]).mode == expected)
    }

    @Test("WANDB_DISABLED=true means mode disabled, whatever the mode says")
    func disabled() throws {
        #expect(try EnvironmentOverrides.parse(["WANDB_DISABLED": "true"]).mode == "disabled")
        #expect(try EnvironmentOverrides.parse(["WANDB_DISABLED": "1", "WANDB_MODE": "online"]).mode == "disabled")
        #expect(try EnvironmentOverrides.parse(["WANDB_DISABLED": "false", "WANDB_MODE": "offline"]).mode == "offline")
        #expect(try EnvironmentOverrides.parse(["RUNLOG_DISABLED": "no", "WANDB_DISABLED": "true"]).mode == nil)
    }

    @Test("resume values", arguments: [("allow", "allow"), ("never", "never"), ("must", "must"), ("auto", "auto"), ("true", "auto"), ("false", nil)] as [(String, String?)])
    func resume(value: String, expected: String?) throws {
        #expect(try EnvironmentOverrides.parse(["WANDB_RESUME": value]).resume == expected)
    }

    @Test("invalid values name the variable", arguments: [
        ("WANDB_MODE", "banana"), ("RUNLOG_MODE", "shared"), ("WANDB_RESUME", "sometimes"),
        ("WANDB_SILENT", "maybe"), ("WANDB_DISABLED", "yes please"), ("WANDB_CONSOLE", "tty"),
        ("WANDB_BASE_URL", "wandb.example.org"), ("WANDB_BASE_URL", "ftp://host"), ("WANDB_BASE_URL", "https://"),
        ("WANDB_RUN_ID", "a/b"), ("RUNLOG_RUN_ID", " lead"),
    ])
    func invalid(variable: String, value: String) {
        do {
            _ = try EnvironmentOverrides.parse([variable: value])
            Issue.record("\(variable)=\(value) accepted")
        } catch {
            #expect(error.variable == variable)
            #expect(error.value == value)
            #expect(error.description.contains(variable))
            #expect(error.description.contains(value))
        }
    }

    @Test("the WANDB_MODE error lists the accepted values")
    func modeMessage() {
        #expect(throws: EnvironmentOverrideError(
            variable: "WANDB_MODE", value: "banana", expected: "one of online, offline, disabled, dryrun, run")
        ) { try EnvironmentOverrides.parse(["WANDB_MODE": "banana"]) }
    }

    @Test("a bad run id reports the offending character")
    func runIDMessage() throws {
        let error = try #require(throws: EnvironmentOverrideError.self) {
            try EnvironmentOverrides.parse(["WANDB_RUN_ID": "exp#1"])
        }
        #expect(error.description.contains("\"#\""))
    }

    @Test("an invalid API key is reported without its value")
    func apiKeyNotEchoed() throws {
        let error = try #require(throws: EnvironmentOverrideError.self) {
            try EnvironmentOverrides.parse(["WANDB_API_KEY": "secret part two"])
        }
        #expect(error.variable == "WANDB_API_KEY")
        #expect(error.value == nil)
        #expect(!error.description.contains("secret"))
    }
}
