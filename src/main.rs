//! The `lifeboat` binary: parses the command line, sets up logging and dispatches to a
//! subcommand. Nothing else lives here.

use clap::Parser;
use lifeboat::telemetry::{self, LogFormat};

#[derive(Parser, Debug)]
#[command(name = "lifeboat", version, about = "Backups and DR drills for Kubernetes")]
struct Cli {
    /// Log filter, in `RUST_LOG` syntax.
    #[arg(long, env = "LIFEBOAT_LOG", default_value = "info", global = true)]
    log: String,
    /// Log line format.
    #[arg(long, env = "LIFEBOAT_LOG_FORMAT", value_enum, default_value_t, global = true)]
    log_format: LogFormat,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(&cli.log, cli.log_format);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
