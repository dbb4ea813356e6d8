//! The `authkeyring` binary: the operator and its admin CLI, also installed as `kubectl-authkeyring`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use authkeyring::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    // Installed as `kubectl-authkeyring`, kubectl runs it as `kubectl authkeyring ...`: say so in
    // help and errors.
    let invoked = std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let mut command = Cli::command();
    if invoked.starts_with("kubectl-") {
        command = command
            .name("kubectl authkeyring")
            .bin_name("kubectl authkeyring");
    }
    let cli = match command.try_get_matches().and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };

    match cli.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", authkeyring::cli::describe(&error));
            ExitCode::FAILURE
        }
    }
}
