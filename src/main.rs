//! The `lifeboat` binary: parses the command line, sets up logging and dispatches to a
//! subcommand (all in `lifeboat::cli`). Nothing else lives here.

fn main() -> std::process::ExitCode {
    lifeboat::cli::main()
}
