//! `lifeboat mover ...`: the entrypoint of mover Jobs (see `crate::mover`). The words
//! after `mover` are the argv the controller rendered from a typed command
//! (`jobs::mover::command`); they pass through clap untouched and are parsed there, so
//! the grammar has one definition, next to its renderer.

use clap::Args;

use super::{CliError, RepoArgs};
use crate::mover;

/// `mover` arguments, as rendered into a mover Job.
#[derive(Args, Debug)]
pub struct MoverCmd {
    /// The command: `backup volume|database|manifests`, `restore ...`, `retention`,
    /// `check sql|freshness|files|http` or `report`, with its options.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    args: Vec<String>,
}

impl MoverCmd {
    /// The container argv this command line came from (`mover ...`).
    fn argv(&self) -> Vec<String> {
        std::iter::once("mover".to_string())
            .chain(self.args.iter().cloned())
            .collect()
    }
}

/// Runs a mover command; its result has been written when this returns.
pub fn run(c: MoverCmd, repo: &RepoArgs) -> Result<(), CliError> {
    Ok(mover::run_args(&c.argv(), &repo.access())?)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};
    use crate::jobs::mover::command::{
        BackupCommand, BackupDatabase, BackupRun, CheckCommand, CheckSql, DbTarget, MoverCommand,
        NamespacedName, SqlTest,
    };

    /// What the mover would parse from a full command line.
    fn through_clap(line: &[String]) -> MoverCommand {
        let cli = Cli::try_parse_from(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let Command::Mover(m) = cli.command else {
            panic!("not a mover command: {line:?}")
        };
        MoverCommand::parse(&m.argv()).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    /// Values that look like flags (dump arguments, negative bounds, `--` itself) reach
    /// the mover's parser unchanged, whatever clap would make of them.
    #[test]
    fn rendered_commands_pass_through_clap_unchanged() {
        let commands = [
            MoverCommand::Backup(BackupCommand::Database(BackupDatabase {
                source: "pg".into(),
                engine: crate::db::Engine::Postgres,
                host: "pg".into(),
                port: Some(5432),
                database: Some("-q".into()),
                extra_args: vec!["--".into(), "-Z0".into(), "--help".into()],
                run: BackupRun {
                    policy: NamespacedName::new("shop", "orders"),
                    backup: "--version".into(),
                    owner: None,
                },
            })),
            MoverCommand::Check(CheckCommand::Sql(CheckSql {
                db: DbTarget {
                    engine: crate::db::Engine::Mysql,
                    host: "db".into(),
                    port: None,
                    database: "shop".into(),
                },
                test: SqlTest::Query {
                    query: "-- a comment\nselect -1".into(),
                    expect: crate::crd::dr_drill::Expectation {
                        at_most: Some("-1".into()),
                        ..Default::default()
                    },
                },
            })),
        ];
        for c in commands {
            let line: Vec<String> = std::iter::once("lifeboat".to_string())
                .chain(c.to_args())
                .collect();
            assert_eq!(through_clap(&line), c, "{line:?}");
        }
        // Global options still go before `mover`.
        let line: Vec<String> = [
            "lifeboat", "--repo", "/r", "mover", "report", "--run", "a/b",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let cli = Cli::try_parse_from(&line).unwrap();
        assert_eq!(cli.repo.repository.as_deref(), Some("/r"));
    }
}
