//! `wasm-cni-registry`: `wasm-cni guest push` and `guest pull` (wasm-cni execs it with
//! its arguments). A binary of its own so that the registry client (HTTP, TLS, 16k more
//! relocations at load) is not in the binary every CNI call execs.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use wasm_cni::registry::{self, Ref};

#[derive(Parser)]
#[command(name = "wasm-cni", version, about = "wasm-cni's registry client")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Guests in an OCI registry.
    Guest {
        #[command(subcommand)]
        what: GuestCmd,
    },
}

#[derive(Subcommand)]
enum GuestCmd {
    /// Push FILE to a registry as a Wasm OCI artifact (config
    /// application/vnd.wasm.config.v0+json, one application/wasm layer), after the checks
    /// of `guest check`; print REF@sha256:<manifest digest>.
    Push {
        /// The component.
        file: PathBuf,
        /// host[:port]/repository[:tag] (oci:// allowed).
        #[arg(value_parser = registry::parse_push_reference)]
        reference: Ref,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Pull a guest from a registry into FILE: the manifest's digest checked against a
    /// pinned reference, the layer's against the manifest, the checks of `guest check`,
    /// written atomically; print sha256:<hex> of the component (what a config pins).
    Pull {
        /// host[:port]/repository[:tag][@sha256:<hex>] (oci:// allowed).
        #[arg(value_parser = registry::parse_reference)]
        reference: Ref,
        /// Where to write the component (replaced atomically; nothing is written on error).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

#[derive(clap::Args)]
struct RegistryArgs {
    /// Plain HTTP, for a local registry without TLS (HTTPS otherwise).
    #[arg(long, conflicts_with = "ca_file")]
    insecure: bool,
    /// Trust the CA certificates in this PEM file, besides the system's.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Docker-style config with auths.<host>.auth (base64 user:password). Default:
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json, if it exists.
    #[arg(long, value_name = "FILE")]
    registry_config: Option<PathBuf>,
    /// Basic-auth user name (wins over the registry config), with --password-stdin.
    #[arg(long, requires = "password_stdin")]
    username: Option<String>,
    /// Read the password for --username from stdin.
    #[arg(long, requires = "username")]
    password_stdin: bool,
}

impl From<RegistryArgs> for registry::Options {
    fn from(a: RegistryArgs) -> Self {
        Self {
            insecure: a.insecure,
            ca_file: a.ca_file,
            registry_config: a.registry_config,
            username: a.username,
            password_stdin: a.password_stdin,
        }
    }
}

/// Print what a closed pipe may cut short: not an error worth a panic.
fn print(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
}

fn main() {
    // errors: one line on stderr naming the reference, exit 1 (clap's usage errors: 2)
    let Cmd::Guest { what } = Cli::parse().command;
    let (name, outcome) = match what {
        GuestCmd::Push {
            file,
            reference,
            registry,
        } => (
            "guest push",
            registry::push(&file, &reference, &registry.into())
                .map(|pinned| print(&format!("{pinned}\n"))),
        ),
        GuestCmd::Pull {
            reference,
            output,
            registry,
        } => (
            "guest pull",
            registry::pull(&reference, &output, &registry.into()).map(|pulled| {
                eprintln!(
                    "wasm-cni guest pull: {reference} -> {} ({} KiB, manifest {})",
                    output.display(),
                    pulled.size.div_ceil(1024),
                    pulled.manifest_digest
                );
                print(&format!("{}\n", pulled.digest));
            }),
        ),
    };
    if let Err(e) = outcome {
        eprintln!("wasm-cni {name}: {e}");
        std::process::exit(1);
    }
}
