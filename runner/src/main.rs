//! `wasm-cni`: run with no arguments as a CNI plugin (CNI_* env, config on stdin, one
//! JSON document on stdout); with arguments, a small tool for operators and students.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "wasm-cni",
    version,
    about = "CNI plugin whose policy is a WebAssembly component.\nWith no arguments it runs as a CNI plugin."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check that FILE is a component implementing the runner's world.
    Validate { file: PathBuf },
}

fn main() {
    if std::env::args_os().len() <= 1 {
        let code = std::panic::catch_unwind(wasm_cni::cni_main).unwrap_or_else(|_| {
            wasm_cni::fatal("the runner panicked (see stderr)");
        });
        std::process::exit(code);
    }
    match Cli::parse().command {
        Cmd::Validate { file } => match wasm_cni::wasm::validate(&file) {
            Ok(()) => println!(
                "ok: {} implements {}",
                file.display(),
                wasm_cni::wasm::WORLD
            ),
            Err(e) => {
                eprintln!("wasm-cni validate: {e}");
                std::process::exit(1);
            }
        },
    }
}
