//! `analytics-node`: the verifiable real-time analytics node.
//!
//! The binary parses its command line and hands over to the library; see
//! `docs/architecture.md` for how the parts fit together.

use std::process::ExitCode;

use analytics_node::cli::{Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    analytics_node::logging::init(cli.log_json);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    use analytics_node::{commands, feed, verify};
    match command {
        Command::Run(args) => commands::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Migrate(args) => {
            commands::migrate(args).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Deploy(args) => commands::deploy(args).await.map(|()| ExitCode::SUCCESS),
        Command::Verify(args) => {
            let verdict = verify::run(args).await?;
            for line in &verdict.lines {
                println!("{line}");
            }
            let (text, code) = if verdict.verified {
                ("VERIFIED", ExitCode::SUCCESS)
            } else {
                ("NOT VERIFIED", ExitCode::FAILURE)
            };
            println!("{text}");
            Ok(code)
        }
        Command::Replay(args) => {
            let report = analytics_node::replay::run(args).await?;
            for line in &report.lines {
                println!("{line}");
            }
            let (text, code) = if report.matches {
                ("REPLAY MATCHES", ExitCode::SUCCESS)
            } else {
                ("REPLAY DIFFERS", ExitCode::FAILURE)
            };
            println!("{text}");
            Ok(code)
        }
        Command::ReplayCsv(args) => {
            let published = feed::run(args).await?;
            println!("published {published} messages");
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            analytics_node::bench::run(args).await.map(|()| ExitCode::SUCCESS)
        }
    }
}
