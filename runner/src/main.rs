//! `wasm-cni`: run with no arguments as a CNI plugin (CNI_* env, config on stdin, one
//! JSON document on stdout); with arguments, a small tool for operators and students.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

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
    /// Work with guest components.
    Guest {
        #[command(subcommand)]
        what: GuestCmd,
    },
    /// Run a guest on one CNI request against a simulated node (no root, no kernel
    /// changes) and print every host call it made, with the answers, and its result.
    Simulate {
        /// ADD, DEL, CHECK, GC, STATUS or RECONCILE (the node-policy export).
        command: String,
        /// CNI_CONTAINERID.
        #[arg(default_value = "pod-1")]
        container_id: String,
        /// The network config (JSON), as a runtime would send it.
        #[arg(short, long)]
        config: PathBuf,
        /// The guest component (default: the config's "guest").
        #[arg(short, long)]
        guest: Option<PathBuf>,
        /// Keep the simulated node in this file between calls (created if missing).
        #[arg(short, long)]
        session: Option<PathBuf>,
        /// CNI_IFNAME.
        #[arg(long, default_value = "eth0")]
        ifname: String,
        /// Send no CNI_NETNS (DEL after the pod's namespace is gone).
        #[arg(long)]
        no_netns: bool,
        /// CNI_ARGS (K=V;K2=V2).
        #[arg(long)]
        args: Option<String>,
        /// Print the simulated node after the call.
        #[arg(long)]
        show_node: bool,
    },
    /// Bring this node in line with the network config (a node joined or left the
    /// cluster): run the guest's node-policy `reconcile` under the network's lock, with
    /// its changes undone if it fails. A guest without that export has nothing to do.
    Reconcile {
        /// The network config: a .conflist (its wasm-cni entry) or a .conf.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Same as `guest check`, printing only the verdict (kept for scripts).
    #[command(hide = true)]
    Validate { file: PathBuf },
}

#[derive(Subcommand)]
enum GuestCmd {
    /// Check that FILE is a component implementing the runner's world, and show what
    /// it exports and imports.
    Check {
        file: PathBuf,
        /// Also precompile FILE into this cache directory (the network config's
        /// cacheDir), so that the node's first CNI call does not compile it.
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Push FILE to a registry as a Wasm OCI artifact, after the checks of `guest check`,
    /// and print REF@sha256:<manifest digest> (`guest push --help`: the options).
    #[command(disable_help_flag = true)]
    Push {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "FILE REF"
        )]
        args: Vec<OsString>,
    },
    /// Pull a guest from a registry into FILE (digests verified, the checks of `guest
    /// check`, written atomically) and print its sha256 digest (`guest pull --help`).
    #[command(disable_help_flag = true)]
    Pull {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "REF -o FILE"
        )]
        args: Vec<OsString>,
    },
}

fn main() {
    if std::env::args_os().len() <= 1 {
        let code = std::panic::catch_unwind(wasm_cni::cni_main).unwrap_or_else(|_| {
            wasm_cni::panicked();
        });
        std::process::exit(code);
    }
    // the subcommands are the edge: their errors become one line on stderr and an exit
    // code (1: the guest or the input was refused, 2: the tool itself failed)
    let (name, failure_code, outcome) = match Cli::parse().command {
        Cmd::Guest {
            what: GuestCmd::Check { file, cache_dir },
        } => ("guest check", 1, guest_check(&file, cache_dir.as_deref())),
        Cmd::Guest {
            what: GuestCmd::Push { args },
        } => ("guest push", 2, registry_tool("push", args)),
        Cmd::Guest {
            what: GuestCmd::Pull { args },
        } => ("guest pull", 2, registry_tool("pull", args)),
        Cmd::Validate { file } => ("validate", 1, validate(&file)),
        Cmd::Reconcile { config } => ("reconcile", 1, reconcile(&config)),
        Cmd::Simulate {
            command,
            container_id,
            config,
            guest,
            session,
            ifname,
            no_netns,
            args,
            show_node,
        } => (
            "simulate",
            2,
            simulate(&wasm_cni::simulate::Options {
                command,
                config,
                guest,
                session,
                container_id,
                ifname,
                no_netns,
                args,
                show_node,
            }),
        ),
    };
    match outcome {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("wasm-cni {name}: {e:#}");
            std::process::exit(failure_code);
        }
    }
}

/// Print what a closed pipe (`... | head`) may cut short: not an error worth a panic.
fn print(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
}

fn guest_check(file: &Path, cache_dir: Option<&Path>) -> Result<i32> {
    let report = wasm_cni::wasm::check::check_into(file, cache_dir).context("refused")?;
    print(&(report.lines.join("\n") + "\n"));
    Ok(0)
}

/// `guest push` and `guest pull` are run by `wasm-cni-registry`, installed next to this
/// binary: the registry client (HTTP, TLS) stays out of the binary every CNI call execs.
fn registry_tool(what: &str, args: Vec<OsString>) -> Result<i32> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot locate wasm-cni")?;
    let tool = exe.with_file_name("wasm-cni-registry");
    let err = std::process::Command::new(&tool)
        .args(["guest", what])
        .args(args)
        .exec();
    Err(err).with_context(|| {
        format!(
            "cannot run {} (scripts/build.sh builds it next to wasm-cni)",
            tool.display()
        )
    })
}

/// The one-line summary on stdout; a failure is the error on stderr (exit 1). A panic
/// is rolled back by the supervisor, as in a CNI call.
fn reconcile(config: &Path) -> Result<i32> {
    let run = || wasm_cni::reconcile::run(config);
    let summary = std::panic::catch_unwind(run).unwrap_or_else(|_| wasm_cni::panicked())?;
    print(&format!("{summary}\n"));
    Ok(0)
}

fn validate(file: &Path) -> Result<i32> {
    let world = wasm_cni::wasm::validate(file)?;
    println!("ok: {} implements {}", file.display(), world.name());
    Ok(0)
}

/// Exit 0 if the guest answered without error, 1 if it answered with a CNI error.
fn simulate(o: &wasm_cni::simulate::Options) -> Result<i32> {
    let out = wasm_cni::simulate::run(o)?;
    print(&out.text);
    if let Some(e) = out.session_error {
        return Err(e).context("session not saved");
    }
    Ok(if out.ok { 0 } else { 1 })
}
