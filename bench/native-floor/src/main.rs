//! The benchmark's native floor (scripts/bench.sh, docs/bench.md). Measurement only:
//! nothing here is part of wasm-cni.
//!
//! `native-floor` (no arguments) is an exec'd CNI plugin, called like wasm-cni (CNI_*
//! environment, network config on stdin, one JSON result on stdout), that does exactly
//! the work the default guest asks the runner for in a warm ADD, natively:
//!   - store: get node/setup, get attach/<cid>/<ifname>, get last, get ip/<candidate>
//!     (round-robin IPAM in `myPodSubnet`), then put ip/<ip>, attach/..., last, each one
//!     file written aside, fallocate'd and renamed, as the runner's store writes, all
//!     under a flock on `<stateDir>/<name>/lock`;
//!   - netlink: get the bridge, get the host link, get the pod's `CNI_IFNAME`, create
//!     the veth with its peer directly in the pod namespace, set the host end's master
//!     to the bridge, bring it up, add the address in the pod, bring the peer up, add
//!     the default route via the gateway in the pod.
//!
//! DEL deletes the host veth (get + delete) and the two store keys. A bridge missing at
//! ADD is created once with the gateway address (the guest's one-time node set-up; no
//! firewall or sysctl: a warm ADD does none). VERSION answers at once.
//!
//! `native-floor kernel-floor COUNT NETNS_PREFIX SUBNET [BRIDGE]` is the kernel floor,
//! in ONE process, in the node namespace it runs in: for i in 0..COUNT it makes the
//! same veth as an ADD (peer `eth0` in NETNS_PREFIX<i>, on the bridge, up, address
//! <i+2> of SUBNET, default route), then deletes the COUNT host ends in the same order,
//! timing each netlink request. Prints one JSON document: create_us (the veth create
//! request), add_work_us (all the ADD's link work), delete_us (the delete request).
//! Whatever it created is deleted also when it fails.

use futures::stream::TryStreamExt;
use ipnetwork::Ipv4Network;
use nix::fcntl::{Flock, FlockArg};
use nix::sched::{setns, CloneFlags};
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use serde_json::{json, Value};
use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

type Res<T> = Result<T, String>;

const ENODEV: i32 = 19;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail("1.0.0", &format!("tokio runtime: {e}")),
    };
    if args.first().map(String::as_str) == Some("kernel-floor") {
        match rt.block_on(kernel_floor(&args[1..])) {
            Ok(doc) => println!("{doc}"),
            Err(e) => {
                eprintln!("native-floor kernel-floor: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let cmd = std::env::var("CNI_COMMAND").unwrap_or_default();
    if cmd == "VERSION" {
        println!(
            r#"{{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}}"#
        );
        return;
    }
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        fail("1.0.0", &format!("reading stdin: {e}"));
    }
    let conf: Value =
        serde_json::from_slice(&stdin).unwrap_or_else(|e| fail("1.0.0", &format!("config: {e}")));
    let version = conf["cniVersion"].as_str().unwrap_or("1.0.0").to_string();
    let r = rt.block_on(async {
        match cmd.as_str() {
            "ADD" => add(&conf).await.map(Some),
            "DEL" => del(&conf).await.map(|_| None),
            "CHECK" | "STATUS" | "GC" => Ok(None),
            other => Err(format!("unknown CNI_COMMAND {other:?}")),
        }
    });
    match r {
        Ok(Some(mut doc)) => {
            doc["cniVersion"] = json!(version);
            println!("{doc}");
        }
        Ok(None) => {}
        Err(e) => fail(&version, &e),
    }
}

fn fail(version: &str, msg: &str) -> ! {
    println!(
        "{}",
        json!({"cniVersion": version, "code": 999, "msg": msg})
    );
    std::process::exit(1);
}

fn env(name: &str) -> Res<String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

/// What one call needs from the config and the environment.
struct Call {
    cid: String,
    ifname: String,
    netns: Option<PathBuf>,
    host_link: String,
    bridge: String,
    subnet: Ipv4Network,
    store: Store,
}

impl Call {
    fn new(conf: &Value) -> Res<Call> {
        let cid = env("CNI_CONTAINERID")?;
        let ifname = env("CNI_IFNAME")?;
        let netns = std::env::var("CNI_NETNS")
            .ok()
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        let name = conf["name"].as_str().ok_or("config: no name")?;
        let subnet: Ipv4Network = conf["myPodSubnet"]
            .as_str()
            .ok_or("config: no myPodSubnet")?
            .parse()
            .map_err(|e| format!("config: myPodSubnet: {e}"))?;
        let state = conf["stateDir"]
            .as_str()
            .unwrap_or("/var/lib/cni/native-floor");
        let bridge = conf["bridge"].as_str().unwrap_or("cni0").to_string();
        // deterministic, like the runner's `<prefix><hash of container id, ifname>`
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&cid, &ifname).hash(&mut h);
        let host_link = format!("nf{:012x}", h.finish() & 0xffff_ffff_ffff);
        Ok(Call {
            store: Store::open(&Path::new(state).join(name))?,
            cid,
            ifname,
            netns,
            host_link,
            bridge,
            subnet,
        })
    }
}

async fn add(conf: &Value) -> Res<Value> {
    let c = Call::new(conf)?;
    let _lock = c.store.lock()?;
    let host = connect()?;
    let gw = Ipv4Addr::from(u32::from(c.subnet.network()) + 1);
    if get_link(&host, &c.bridge).await?.is_none() {
        make_bridge(
            &host,
            &c.bridge,
            Ipv4Network::new(gw, c.subnet.prefix()).unwrap(),
        )
        .await?;
    }
    if c.store.get("node/setup")?.is_none() {
        c.store
            .put("node/setup", &format!("v1 bridge={} gw={gw}", c.bridge))?;
    }
    let attach = format!("attach/{}/{}", c.cid, c.ifname);
    if let Some(ip) = c.store.get(&attach)? {
        return Err(format!("{} {} already has {ip}", c.cid, c.ifname));
    }
    // round-robin after the last address given, skipping the held ones
    let (first, size) = (
        u32::from(c.subnet.network()) + 2,
        c.subnet.size().saturating_sub(3),
    );
    let last = c
        .store
        .get("last")?
        .and_then(|s| s.parse::<Ipv4Addr>().ok());
    let start = last.map_or(0, |l| u32::from(l).wrapping_sub(first).wrapping_add(1));
    let mut ip = None;
    for k in 0..size {
        let cand = Ipv4Addr::from(first + (start + k) % size);
        if c.store.get(&format!("ip/{cand}"))?.is_none() {
            ip = Some(cand);
            break;
        }
    }
    let ip = ip.ok_or("no free address in myPodSubnet")?;
    c.store
        .put(&format!("ip/{ip}"), &format!("{} {}", c.cid, c.ifname))?;
    c.store.put(&attach, &ip.to_string())?;
    c.store.put("last", &ip.to_string())?;

    if get_link(&host, &c.host_link).await?.is_some() {
        return Err(format!("link {} exists", c.host_link));
    }
    let path = c.netns.as_ref().ok_or("CNI_NETNS is empty")?;
    let ns = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let pod = connect_in(&ns)?;
    if get_link(&pod, &c.ifname).await?.is_some() {
        return Err(format!("{} exists in the pod", c.ifname));
    }
    let addr = Ipv4Network::new(ip, c.subnet.prefix()).unwrap();
    let (hl, pl) = veth_work(
        &host,
        &pod,
        &ns,
        &c.host_link,
        &c.ifname,
        &c.bridge,
        addr,
        gw,
        None,
    )
    .await?;
    Ok(json!({
        "interfaces": [{"name": c.host_link, "mac": mac(&hl)},
                       {"name": c.ifname, "mac": mac(&pl), "sandbox": path}],
        "ips": [{"address": addr.to_string(), "gateway": gw.to_string(), "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": gw.to_string()}],
        "dns": {},
    }))
}

async fn del(conf: &Value) -> Res<()> {
    let c = Call::new(conf)?;
    let _lock = c.store.lock()?;
    let host = connect()?;
    if let Some(l) = get_link(&host, &c.host_link).await? {
        host.link()
            .del(l.header.index)
            .execute()
            .await
            .map_err(|e| format!("delete {}: {e}", c.host_link))?;
    }
    let attach = format!("attach/{}/{}", c.cid, c.ifname);
    if let Some(ip) = c.store.get(&attach)? {
        if c.store.get(&format!("ip/{ip}"))?.is_some() {
            c.store.delete(&format!("ip/{ip}"))?;
        }
        c.store.delete(&attach)?;
    }
    Ok(())
}

/// The link work of one ADD; on failure the veth (if made) is deleted again. With
/// `timing`, the create request's time goes there.
#[allow(clippy::too_many_arguments)]
async fn veth_work(
    host: &Handle,
    pod: &Handle,
    ns: &File,
    host_link: &str,
    peer: &str,
    bridge: &str,
    addr: Ipv4Network,
    gw: Ipv4Addr,
    timing: Option<&mut u128>,
) -> Res<(LinkMessage, LinkMessage)> {
    let p = LinkMessageBuilder::<LinkUnspec>::new()
        .name(peer.to_string())
        .setns_by_fd(ns.as_raw_fd());
    let msg = LinkVeth::new(host_link, peer)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(p.build())))
        .build();
    let t = Instant::now();
    host.link()
        .add(msg)
        .execute()
        .await
        .map_err(|e| format!("create veth {host_link}: {e}"))?;
    if let Some(us) = timing {
        *us = t.elapsed().as_micros();
    }
    let r = async {
        let br = must_link(host, bridge).await?;
        let hl = must_link(host, host_link).await?;
        let pl = must_link(pod, peer).await?;
        let set = |h: &Handle, m: LinkMessage, what: &str| {
            let (h, what) = (h.clone(), what.to_string());
            async move {
                h.link()
                    .set(m)
                    .execute()
                    .await
                    .map_err(|e| format!("{what}: {e}"))
            }
        };
        let i = hl.header.index;
        set(
            host,
            LinkUnspec::new_with_index(i)
                .controller(br.header.index)
                .build(),
            "set master",
        )
        .await?;
        set(
            host,
            LinkUnspec::new_with_index(i).up().build(),
            "host end up",
        )
        .await?;
        pod.address()
            .add(pl.header.index, IpAddr::V4(addr.ip()), addr.prefix())
            .execute()
            .await
            .map_err(|e| format!("address {addr}: {e}"))?;
        set(
            pod,
            LinkUnspec::new_with_index(pl.header.index).up().build(),
            "peer up",
        )
        .await?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
            .gateway(gw)
            .output_interface(pl.header.index)
            .build();
        pod.route()
            .add(route)
            .execute()
            .await
            .map_err(|e| format!("default route: {e}"))?;
        Ok((hl, pl))
    }
    .await;
    if r.is_err() {
        if let Ok(Some(l)) = get_link(host, host_link).await {
            let _ = host.link().del(l.header.index).execute().await;
        }
    }
    r
}

async fn make_bridge(h: &Handle, name: &str, gw: Ipv4Network) -> Res<()> {
    h.link()
        .add(LinkBridge::new(name).build())
        .execute()
        .await
        .map_err(|e| format!("create bridge {name}: {e}"))?;
    let b = must_link(h, name).await?;
    h.address()
        .add(b.header.index, IpAddr::V4(gw.ip()), gw.prefix())
        .execute()
        .await
        .map_err(|e| format!("bridge address: {e}"))?;
    h.link()
        .set(LinkUnspec::new_with_index(b.header.index).up().build())
        .execute()
        .await
        .map_err(|e| format!("bridge up: {e}"))
}

fn connect() -> Res<Handle> {
    let (conn, h, _) = rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
    tokio::spawn(conn);
    Ok(h)
}

/// A netlink socket bound to `ns` (a socket stays in the namespace it was made in).
fn connect_in(ns: &File) -> Res<Handle> {
    let home = File::open("/proc/thread-self/ns/net").map_err(|e| format!("own netns: {e}"))?;
    setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| format!("entering the pod netns: {e}"))?;
    let h = connect();
    if let Err(e) = setns(&home, CloneFlags::CLONE_NEWNET) {
        eprintln!("native-floor: cannot return to the node namespace: {e}");
        std::process::abort();
    }
    h
}

async fn get_link(h: &Handle, name: &str) -> Res<Option<LinkMessage>> {
    match h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(m) => Ok(m),
        Err(rtnetlink::Error::NetlinkError(m)) if m.code.map(|c| -c.get()) == Some(ENODEV) => {
            Ok(None)
        }
        Err(e) => Err(format!("link {name}: {e}")),
    }
}

async fn must_link(h: &Handle, name: &str) -> Res<LinkMessage> {
    get_link(h, name)
        .await?
        .ok_or_else(|| format!("link {name}: not found"))
}

fn mac(m: &LinkMessage) -> String {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(b) => Some(
                b.iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// One file per key under kv/, written aside in tmp/ and renamed (no fsync), like the
/// runner's store.
struct Store {
    dir: PathBuf,
}

impl Store {
    fn open(dir: &Path) -> Res<Store> {
        for d in ["kv", "tmp"] {
            fs::create_dir_all(dir.join(d)).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    fn lock(&self) -> Res<Flock<File>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("lock"))
            .map_err(|e| format!("lock file: {e}"))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| format!("lock: {e}"))
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir
            .join("kv")
            .join(key.replace('%', "%25").replace('/', "%2F"))
    }

    fn get(&self, key: &str) -> Res<Option<String>> {
        match fs::read_to_string(self.path(key)) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("store get {key}: {e}")),
        }
    }

    fn put(&self, key: &str, value: &str) -> Res<()> {
        let path = self.path(key);
        let tmp = self.dir.join("tmp").join(format!(
            "{}-{}",
            std::process::id(),
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            if !value.is_empty() {
                let _ = nix::fcntl::fallocate(
                    &f,
                    nix::fcntl::FallocateFlags::empty(),
                    0,
                    value.len() as i64,
                );
            }
            f.write_all(value.as_bytes())?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            format!("store put {key}: {e}")
        })
    }

    fn delete(&self, key: &str) -> Res<()> {
        match fs::remove_file(self.path(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("store delete {key}: {e}"))
            }
            _ => Ok(()),
        }
    }
}

async fn kernel_floor(args: &[String]) -> Res<Value> {
    let [count, prefix, subnet, rest @ ..] = args else {
        return Err("usage: native-floor kernel-floor COUNT NETNS_PREFIX SUBNET [BRIDGE]".into());
    };
    let count: u32 = count.parse().map_err(|e| format!("COUNT: {e}"))?;
    let subnet: Ipv4Network = subnet.parse().map_err(|e| format!("SUBNET: {e}"))?;
    let bridge = rest.first().map_or("cni0", String::as_str);
    let gw = Ipv4Addr::from(u32::from(subnet.network()) + 1);
    let host = connect()?;
    must_link(&host, bridge).await?;
    let mut made: Vec<(String, u32)> = Vec::new();
    let (mut create_us, mut add_work_us, mut delete_us) = (Vec::new(), Vec::new(), Vec::new());
    let mut made_all = async {
        for i in 0..count {
            let path = format!("{prefix}{i}");
            let ns = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            let pod = connect_in(&ns)?;
            let name = format!("kf{i}");
            let ip = Ipv4Addr::from(u32::from(subnet.network()) + 2 + i);
            let addr = Ipv4Network::new(ip, subnet.prefix()).map_err(|e| e.to_string())?;
            let (mut create, t) = (0u128, Instant::now());
            let (hl, _) = veth_work(
                &host,
                &pod,
                &ns,
                &name,
                "eth0",
                bridge,
                addr,
                gw,
                Some(&mut create),
            )
            .await?;
            add_work_us.push(t.elapsed().as_micros());
            create_us.push(create);
            made.push((name, hl.header.index));
        }
        Ok::<(), String>(())
    }
    .await;
    if made_all.is_ok() {
        for (name, index) in &made {
            let t = Instant::now();
            if let Err(e) = host.link().del(*index).execute().await {
                made_all = Err(format!("delete {name}: {e}"));
                break;
            }
            delete_us.push(t.elapsed().as_micros());
        }
    }
    if let Err(e) = made_all {
        // leave nothing behind: the pods' next ADDs want their eth0 free
        for (name, _) in &made {
            if let Ok(Some(l)) = get_link(&host, name).await {
                let _ = host.link().del(l.header.index).execute().await;
            }
        }
        return Err(e);
    }
    Ok(
        json!({"count": count, "create_us": create_us, "add_work_us": add_work_us,
              "delete_us": delete_us}),
    )
}
