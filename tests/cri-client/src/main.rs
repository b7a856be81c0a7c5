//! cri-client: plays the kubelet's part against a CRI runtime (containerd) on a unix socket.
//!
//! It sends the pod-sandbox calls the kubelet sends for a pod (RunPodSandbox with the same
//! metadata, PodSandboxStatus, StopPodSandbox, RemovePodSandbox) so that tests/cri can drive
//! the whole kubelet → containerd → CNI path without a cluster. Every call is bounded by
//! `--timeout`. Output is one line: an id, or one JSON document.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::security_profile::ProfileType;
use k8s_cri::v1::{
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListPodSandboxRequest, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PodSandboxState,
    PodSandboxStatusRequest, RemovePodSandboxRequest, RunPodSandboxRequest, SecurityProfile,
    StatusRequest, StopPodSandboxRequest,
};
use serde_json::{json, Value};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

type Client = RuntimeServiceClient<Channel>;

#[derive(Parser)]
#[command(
    name = "cri-client",
    about = "Drive a CRI runtime the way the kubelet does"
)]
struct Cli {
    /// The runtime's CRI socket.
    #[arg(long, default_value = "/run/containerd/containerd.sock", global = true)]
    socket: PathBuf,
    /// Deadline of each CRI call (and of connecting), in seconds.
    #[arg(long, default_value_t = 120, global = true)]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct PodArgs {
    /// Pod namespace (metadata.namespace).
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Directory under which the kubelet-style log directory <ns>_<name>_<uid> is made.
    #[arg(long)]
    log_root: Option<PathBuf>,
    /// linux.cgroup_parent (the kubelet sends its pod cgroup; empty leaves it to the runtime).
    #[arg(long, default_value = "")]
    cgroup_parent: String,
    /// The runtime handler (empty: the runtime's default).
    #[arg(long, default_value = "")]
    runtime_handler: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// RunPodSandbox; prints the sandbox id.
    RunSandbox {
        #[arg(long)]
        name: String,
        #[arg(long)]
        uid: String,
        #[arg(long, default_value_t = 0)]
        attempt: u32,
        #[command(flatten)]
        pod: PodArgs,
    },
    /// PodSandboxStatus (verbose); prints JSON {id, name, namespace, uid, state, ip, ips, netns, pid}.
    Status { id: String },
    /// StopPodSandbox.
    Stop { id: String },
    /// RemovePodSandbox.
    Remove { id: String },
    /// ListPodSandbox; prints a JSON array of {id, name, namespace, uid, state}.
    List,
    /// Runtime Status; prints its conditions as JSON, exits 1 unless RuntimeReady and
    /// NetworkReady are both true.
    Ready,
    /// Stop and remove every sandbox the runtime knows (concurrently); prints JSON.
    Cleanup,
    /// Run COUNT sandboxes, CONCURRENCY at a time, then stop+remove them; prints JSON with
    /// per-call times in ms, medians, and each sandbox's id/ip/netns.
    #[command(alias = "bench")]
    Many {
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// How many pods are in flight at once (default: all of them; 1 = sequential).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Pod name prefix (names are <prefix>-<i>, uids derived from them).
        #[arg(long, default_value = "bench")]
        prefix: String,
        /// Leave the sandboxes running (no stop/remove): for tests that inspect them.
        #[arg(long)]
        keep: bool,
        #[command(flatten)]
        pod: PodArgs,
    },
}

async fn connect(socket: PathBuf, timeout: Duration) -> Result<Client> {
    let sock = Arc::new(socket);
    let s = sock.clone();
    let channel = Endpoint::try_from("http://[::]:50051")?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let s = s.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(&*s).await?)) }
        }))
        .await
        .with_context(|| format!("connecting to {}", sock.display()))?;
    Ok(RuntimeServiceClient::new(channel)
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20))
}

/// The sandbox config the kubelet builds for a pod (kuberuntime generatePodSandboxConfig):
/// metadata, hostname, log directory, labels and annotations it sets itself, and a Linux
/// security context with the pod's own network and IPC namespaces and a per-container PID one.
fn sandbox_config(name: &str, uid: &str, attempt: u32, pod: &PodArgs) -> Result<PodSandboxConfig> {
    let log_directory = match &pod.log_root {
        Some(root) => {
            let dir = root.join(format!("{}_{}_{}", pod.namespace, name, uid));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.to_string_lossy().into_owned()
        }
        None => String::new(),
    };
    let labels = HashMap::from([
        ("io.kubernetes.pod.name".to_string(), name.to_string()),
        (
            "io.kubernetes.pod.namespace".to_string(),
            pod.namespace.clone(),
        ),
        ("io.kubernetes.pod.uid".to_string(), uid.to_string()),
        ("app".to_string(), "cri-client".to_string()),
    ]);
    let seen = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let annotations = HashMap::from([
        ("kubernetes.io/config.seen".to_string(), format!("{seen}")),
        ("kubernetes.io/config.source".to_string(), "api".to_string()),
    ]);
    Ok(PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_string(),
            uid: uid.to_string(),
            namespace: pod.namespace.clone(),
            attempt,
        }),
        hostname: name.to_string(),
        log_directory,
        labels,
        annotations,
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: pod.cgroup_parent.clone(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                seccomp: Some(SecurityProfile {
                    profile_type: ProfileType::Unconfined as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

async fn run_sandbox(
    c: &mut Client,
    name: &str,
    uid: &str,
    attempt: u32,
    pod: &PodArgs,
) -> Result<String> {
    let config = sandbox_config(name, uid, attempt, pod)?;
    let resp = c
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: pod.runtime_handler.clone(),
        })
        .await
        .with_context(|| format!("RunPodSandbox {}/{name}", pod.namespace))?;
    Ok(resp.into_inner().pod_sandbox_id)
}

fn state_name(s: i32) -> &'static str {
    match PodSandboxState::try_from(s) {
        Ok(PodSandboxState::SandboxReady) => "SANDBOX_READY",
        Ok(PodSandboxState::SandboxNotready) => "SANDBOX_NOTREADY",
        Err(_) => "UNKNOWN",
    }
}

async fn status(c: &mut Client, id: &str) -> Result<Value> {
    let resp = c
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        })
        .await
        .with_context(|| format!("PodSandboxStatus {id}"))?
        .into_inner();
    let st = resp
        .status
        .ok_or_else(|| anyhow!("PodSandboxStatus {id}: no status"))?;
    let md = st.metadata.unwrap_or_default();
    let net = st.network.unwrap_or_default();
    let mut ips = vec![net.ip.clone()];
    ips.extend(net.additional_ips.into_iter().map(|p| p.ip));
    ips.retain(|ip| !ip.is_empty());
    // containerd's verbose info: {"pid": N, "runtimeSpec": {"linux": {"namespaces": [...]}}, ...}
    let info: Value = resp
        .info
        .get("info")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    let netns = info["runtimeSpec"]["linux"]["namespaces"]
        .as_array()
        .and_then(|nss| nss.iter().find(|n| n["type"] == "network"))
        .and_then(|n| n["path"].as_str())
        .unwrap_or("")
        .to_string();
    Ok(json!({
        "id": st.id,
        "name": md.name,
        "namespace": md.namespace,
        "uid": md.uid,
        "attempt": md.attempt,
        "state": state_name(st.state),
        "ip": net.ip,
        "ips": ips,
        "netns": netns,
        "pid": info["pid"],
    }))
}

async fn stop(c: &mut Client, id: &str) -> Result<()> {
    c.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    })
    .await
    .with_context(|| format!("StopPodSandbox {id}"))?;
    Ok(())
}

async fn remove(c: &mut Client, id: &str) -> Result<()> {
    c.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    })
    .await
    .with_context(|| format!("RemovePodSandbox {id}"))?;
    Ok(())
}

async fn list(c: &mut Client) -> Result<Vec<Value>> {
    let items = c
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .context("ListPodSandbox")?
        .into_inner()
        .items;
    Ok(items
        .into_iter()
        .map(|p| {
            let md = p.metadata.unwrap_or_default();
            json!({"id": p.id, "name": md.name, "namespace": md.namespace, "uid": md.uid,
                   "state": state_name(p.state)})
        })
        .collect())
}

async fn ready(c: &mut Client) -> Result<(Value, bool)> {
    let st = c
        .status(StatusRequest { verbose: false })
        .await
        .context("Status")?
        .into_inner()
        .status
        .unwrap_or_default();
    let mut out = serde_json::Map::new();
    for cond in &st.conditions {
        out.insert(
            cond.r#type.clone(),
            json!({"status": cond.status, "reason": cond.reason, "message": cond.message}),
        );
    }
    let is = |t: &str| st.conditions.iter().any(|c| c.r#type == t && c.status);
    let ok = is("RuntimeReady") && is("NetworkReady");
    Ok((Value::Object(out), ok))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// A stable pod uid derived from a name (the kubelet's are UUIDs; any unique string works).
fn uid_for(name: &str) -> String {
    // FNV-1a over the name, spread into the UUID layout.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let l = h.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        l >> 52,
        l & 0xffff_ffff_ffff
    )
}

struct PodRun {
    name: String,
    id: Option<String>,
    run_ms: Option<f64>,
    status: Option<Value>,
    stop_ms: Option<f64>,
    remove_ms: Option<f64>,
    error: Option<String>,
}

/// One pod's life: RunPodSandbox, PodSandboxStatus, then (unless keep) Stop + Remove.
async fn one_pod(mut c: Client, name: String, pod: PodArgs, keep: bool) -> PodRun {
    let mut r = PodRun {
        name: name.clone(),
        id: None,
        run_ms: None,
        status: None,
        stop_ms: None,
        remove_ms: None,
        error: None,
    };
    let t = Instant::now();
    match run_sandbox(&mut c, &name, &uid_for(&name), 0, &pod).await {
        Ok(id) => {
            r.run_ms = Some(ms(t.elapsed()));
            r.id = Some(id);
        }
        Err(e) => {
            r.error = Some(format!("{e:#}"));
            return r;
        }
    }
    let id = r.id.clone().unwrap_or_default();
    match status(&mut c, &id).await {
        Ok(s) => r.status = Some(s),
        Err(e) => r.error = Some(format!("{e:#}")),
    }
    if keep {
        return r;
    }
    let t = Instant::now();
    if let Err(e) = stop(&mut c, &id).await {
        r.error = Some(format!("{e:#}"));
        return r;
    }
    r.stop_ms = Some(ms(t.elapsed()));
    let t = Instant::now();
    if let Err(e) = remove(&mut c, &id).await {
        r.error = Some(format!("{e:#}"));
        return r;
    }
    r.remove_ms = Some(ms(t.elapsed()));
    r
}

async fn many(
    c: &Client,
    count: usize,
    concurrency: usize,
    prefix: &str,
    keep: bool,
    pod: &PodArgs,
) -> Result<(Value, bool)> {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let (c, sem, pod) = (c.clone(), sem.clone(), pod.clone());
        let name = format!("{prefix}-{i}");
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            one_pod(c, name, pod, keep).await
        }));
    }
    let mut runs = Vec::with_capacity(count);
    for t in tasks {
        runs.push(t.await?);
    }
    let wall = ms(started.elapsed());
    let run_ms: Vec<f64> = runs.iter().filter_map(|r| r.run_ms).collect();
    let stop_ms: Vec<f64> = runs.iter().filter_map(|r| r.stop_ms).collect();
    let remove_ms: Vec<f64> = runs.iter().filter_map(|r| r.remove_ms).collect();
    let stop_remove_ms: Vec<f64> = runs
        .iter()
        .filter_map(|r| Some(((r.stop_ms? + r.remove_ms?) * 1e3).round() / 1e3))
        .collect();
    let errors: Vec<Value> = runs
        .iter()
        .filter_map(|r| {
            r.error
                .as_ref()
                .map(|e| json!({"name": r.name, "error": e}))
        })
        .collect();
    let sandboxes: Vec<Value> = runs
        .iter()
        .map(|r| {
            let s = r.status.clone().unwrap_or(Value::Null);
            json!({"name": r.name, "id": r.id, "ip": s["ip"], "netns": s["netns"],
                   "state": s["state"]})
        })
        .collect();
    let ok = errors.is_empty();
    Ok((
        json!({
            "count": count,
            "concurrency": concurrency,
            "kept": keep,
            "wall_ms": wall,
            "run_ms": run_ms,
            "stop_ms": stop_ms,
            "remove_ms": remove_ms,
            "stop_remove_ms": stop_remove_ms,
            "run_median_ms": median(&run_ms),
            "stop_remove_median_ms": median(&stop_remove_ms),
            "sandboxes": sandboxes,
            "errors": errors,
        }),
        ok,
    ))
}

async fn cleanup(c: &Client) -> Result<(Value, bool)> {
    let items = list(&mut c.clone()).await?;
    let mut tasks = Vec::new();
    for it in items {
        let id = it["id"].as_str().unwrap_or_default().to_string();
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            let r = async {
                stop(&mut c, &id).await?;
                remove(&mut c, &id).await
            }
            .await;
            (id, r.err().map(|e| format!("{e:#}")))
        }));
    }
    let (mut removed, mut errors) = (Vec::new(), Vec::new());
    for t in tasks {
        match t.await? {
            (id, None) => removed.push(id),
            (id, Some(e)) => errors.push(json!({"id": id, "error": e})),
        }
    }
    let ok = errors.is_empty();
    Ok((json!({"removed": removed, "errors": errors}), ok))
}

async fn real_main(cli: Cli) -> Result<bool> {
    let timeout = Duration::from_secs(cli.timeout);
    let mut c = connect(cli.socket.clone(), timeout).await?;
    match cli.cmd {
        Cmd::RunSandbox {
            name,
            uid,
            attempt,
            pod,
        } => println!("{}", run_sandbox(&mut c, &name, &uid, attempt, &pod).await?),
        Cmd::Status { id } => println!("{}", status(&mut c, &id).await?),
        Cmd::Stop { id } => stop(&mut c, &id).await?,
        Cmd::Remove { id } => remove(&mut c, &id).await?,
        Cmd::List => println!("{}", Value::Array(list(&mut c).await?)),
        Cmd::Ready => {
            let (v, ok) = ready(&mut c).await?;
            println!("{v}");
            return Ok(ok);
        }
        Cmd::Cleanup => {
            let (v, ok) = cleanup(&c).await?;
            println!("{v}");
            return Ok(ok);
        }
        Cmd::Many {
            count,
            concurrency,
            prefix,
            keep,
            pod,
        } => {
            if count == 0 {
                bail!("--count must be at least 1");
            }
            let conc = concurrency.unwrap_or(count);
            let (v, ok) = many(&c, count, conc, &prefix, keep, &pod).await?;
            println!("{v}");
            return Ok(ok);
        }
    }
    Ok(true)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cli = Cli::parse();
    match real_main(cli).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("cri-client: {e:#}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn uids_are_distinct_and_uuid_shaped() {
        let a = uid_for("bench-1");
        let b = uid_for("bench-2");
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn config_has_kubelet_metadata() {
        let pod = PodArgs {
            namespace: "ns1".into(),
            log_root: None,
            cgroup_parent: String::new(),
            runtime_handler: String::new(),
        };
        let c = sandbox_config("p", "u", 2, &pod).unwrap();
        let md = c.metadata.unwrap();
        assert_eq!(
            (
                md.name.as_str(),
                md.uid.as_str(),
                md.namespace.as_str(),
                md.attempt
            ),
            ("p", "u", "ns1", 2)
        );
        assert_eq!(c.hostname, "p");
        assert_eq!(c.labels["io.kubernetes.pod.uid"], "u");
        let ns = c
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, NamespaceMode::Pod as i32);
    }
}
