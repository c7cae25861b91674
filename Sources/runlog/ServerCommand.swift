import ArgumentParser
import Foundation
import Logging
import RunLogServer

/// `runlog server`: serve native ingest, the read API and the web UI (`serve`, the default),
/// or print a new API key (`create-key`).
///
/// Needs the root command to be an `AsyncParsableCommand` (these subcommands are async).
struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Run the RunLog server, or create an API key for it.",
        subcommands: [Serve.self, CreateKey.self],
        defaultSubcommand: Serve.self
    )

    struct DatabaseOption: ParsableArguments {
        @Option(
            name: .long,
            help: ArgumentHelp(
                "A SQLite file (created if missing) or a postgres://user:password@host:port/database URL.",
                discussion: "Defaults to $RUNLOG_DATABASE, else runlog.db in the current directory."))
        var database: String?

        var resolved: String { database ?? ProcessInfo.processInfo.environment["RUNLOG_DATABASE"] ?? "runlog.db" }
    }

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "serve",
            abstract: "Serve native ingest, the W&B protocol, the JSON read API and the web UI.",
            discussion: """
                Runs schema migrations at start. Several servers may share one PostgreSQL database (behind a load balancer); \
                a SQLite database belongs to one server process. Stops on SIGINT or SIGTERM.
                """)

        @Option(help: "Address to listen on.") var host = "127.0.0.1"
        @Option(help: "Port to listen on (0: any free port, printed at start).") var port = 8080
        @OptionGroup var database: DatabaseOption
        @Flag(name: .customLong("public-read"), help: "Let anyone read (API and web UI) without an API key; writes still need one.")
        var publicRead = false
        @Option(name: .customLong("max-request-mib"), help: "Largest ingest request body in MiB.") var maxRequestMiB: Int?
        @Option(name: .customLong("external-url"), help: "The URL clients reach this server at, for the W&B protocol's upload URLs (default: http:// and the request's Host).")
        var externalURL: String?
        @Option(name: .customLong("files-dir"), help: "Where files uploaded through the W&B protocol are kept (default: <database>.files, or runlog-files for PostgreSQL).")
        var filesDir: String?

        func validate() throws {
            guard (0...65535).contains(port) else { throw ValidationError("--port must be 0…65535") }
            if let m = maxRequestMiB, m < 1 { throw ValidationError("--max-request-mib must be at least 1") }
        }

        mutating func run() async throws {
            var configuration = ServerConfiguration(
                host: host, port: port, database: database.resolved, publicRead: publicRead, logger: Logger(label: "runlog.server"))
            if let m = maxRequestMiB { configuration.maxRequestBytes = m << 20 }
            configuration.externalURL = externalURL
            configuration.filesDirectory = filesDir
            let host = configuration.host
            do {
                try await RunLogServerApp.run(configuration: configuration) { port in
                    // One line a script (or a test) can wait for.
                    FileHandle.standardOutput.write(Data("runlog server listening on http://\(host):\(port)\n".utf8))
                }
            } catch let error as ServerError {
                FileHandle.standardError.write(Data("runlog server: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }

    struct CreateKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create-key",
            abstract: "Create an API key that may write an entity, and print it.",
            discussion: """
                Creates the user and the entity when missing. Without --user the key belongs to the user of the \
                entity's own name; with --user the entity is a team and the user one of its members. The key is \
                shown only now: the server keeps its SHA-256.
                """)

        @Option(help: "The entity (user or team) the key may write.") var entity: String
        @Option(help: "The user the key belongs to (default: the entity's name).") var user: String?
        @OptionGroup var database: DatabaseOption
        @Flag(help: "Print {\"key\": …, \"entity\": …, \"user\": …}.") var json = false

        mutating func run() async throws {
            let key: String
            do {
                key = try await createKey(database: database.resolved, entity: entity, user: user, logger: Logger(label: "runlog.server"))
            } catch let error as ServerError {
                FileHandle.standardError.write(Data("runlog server create-key: \(error)\n".utf8))
                throw ExitCode(1)
            }
            if json {
                print("{\"key\":\"\(key)\",\"entity\":\(quoted(entity)),\"user\":\(quoted(user ?? entity))}")
            } else {
                print(key)
            }
        }

        private func quoted(_ s: String) -> String {
            let data = try? JSONSerialization.data(withJSONObject: [s], options: [.fragmentsAllowed])
            let text = data.map { String(decoding: $0, as: UTF8.self) } ?? "[\"\"]"
            return String(text.dropFirst().dropLast())
        }
    }
}
