//! Firewall rules in the runner's own nftables tables for a network: `ip wasm_cni_<net>`
//! for IPv4 sources, `ip6 wasm_cni_<net>` (same name, other family) for IPv6 ones, made
//! at the first rule of that family, so a single-stack network has one table and the
//! IPv4 rules stay in the plain `ip` table they always were in.
//!
//! Each rule purpose has a base chain of its own, hooked where it acts; a request
//! (re)writes that chain in one nft transaction (add table, add chain, flush chain, add
//! rules), so asking twice leaves exactly one copy and never touches anyone else's rules.
//! nft is run only when a guest asks (node setup), not on every call, as a child that
//! dies with the runner.

use crate::node::{Family, OpError, OpResult};
use ipnetwork::IpNetwork;
use nftables::batch::Batch;
use nftables::expr::{Expression, NamedExpression, Payload, PayloadField, Prefix, SetItem};
use nftables::schema::{Chain, FlushObject, NfCmd, NfListObject, Rule, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use std::borrow::Cow;
use std::sync::atomic::{AtomicI32, Ordering};

/// The nft binary: runtimes usually pass PATH to plugins, but not always.
fn nft() -> &'static str {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nft")
}

/// The nft child running now, if any (0: none), so that the watchdog can kill it.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Kill the nft child of the call, if one runs (the deadline passed, or a signal came).
pub fn kill_running() {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: a plain kill(2) of our own child's pid
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Run nft with `args`, `input` on its stdin. The child dies with the runner
/// (PR_SET_PDEATHSIG) and is registered for `kill_running`, so no nft outlives the
/// call's answer: a firewall change can never land after the runner answered.
fn run_nft(args: &[&str], input: Option<&str>) -> OpResult<std::process::Output> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(nft());
    cmd.args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| OpError::failed(format!("running {}: {e}", nft())))?;
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write;
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output();
    CHILD.store(0, Ordering::SeqCst);
    out.map_err(|e| OpError::failed(format!("running {}: {e}", nft())))
}

fn check(out: std::process::Output, what: &str) -> OpResult<std::process::Output> {
    if out.status.success() {
        return Ok(out);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err.trim();
    Err(OpError::failed(format!(
        "nft: {what}: {}",
        if err.is_empty() {
            format!("exited with {}", out.status)
        } else {
            crate::wasm::truncate(err.to_string(), 1024)
        }
    )))
}

fn apply(b: Batch, what: &str) -> OpResult<()> {
    let json = serde_json::to_string(&b.to_nftables())
        .map_err(|e| OpError::failed(format!("nft: {what}: {e}")))?;
    check(run_nft(&["-j", "-f", "-"], Some(&json))?, what).map(|_| ())
}

/// A chain name for a CIDR: `fwd_200_200_0_0_16`, `fwd_fd00_200____48`.
fn chain_for(kind: &str, net: IpNetwork) -> String {
    format!(
        "{kind}_{}_{}",
        net.network().to_string().replace(['.', ':'], "_"),
        net.prefix()
    )
}

/// The nftables family of a table of `family`, and its name in nft's text.
fn nf_family(family: Family) -> (NfFamily, &'static str) {
    match family {
        Family::V4 => (NfFamily::IP, "ip"),
        Family::V6 => (NfFamily::IP6, "ip6"),
    }
}

fn table(family: Family, name: &str) -> Table<'static> {
    Table {
        family: nf_family(family).0,
        name: Cow::Owned(name.to_string()),
        handle: None,
    }
}

fn base_chain(
    family: Family,
    table: &str,
    name: &str,
    ty: NfChainType,
    hook: NfHook,
    prio: i32,
) -> Chain<'static> {
    Chain {
        family: nf_family(family).0,
        table: Cow::Owned(table.to_string()),
        name: Cow::Owned(name.to_string()),
        _type: Some(ty),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Default::default()
    }
}

fn ip(family: Family, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(nf_family(family).1),
            field: Cow::Borrowed(field),
        },
    )))
}

fn prefix(net: IpNetwork) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(Expression::String(Cow::Owned(net.network().to_string()))),
        len: u32::from(net.prefix()),
    }))
}

fn matches(
    family: Family,
    field: &'static str,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match {
        left: ip(family, field),
        right,
        op,
    })
}

fn rule(family: Family, table: &str, chain: &str, expr: Vec<Statement<'static>>) -> Rule<'static> {
    Rule {
        family: nf_family(family).0,
        table: Cow::Owned(table.to_string()),
        chain: Cow::Owned(chain.to_string()),
        expr: Cow::Owned(expr),
        ..Default::default()
    }
}

/// (Re)write one base chain with `rules`, atomically.
fn write_chain(
    family: Family,
    table_name: &str,
    chain: Chain<'static>,
    rules: Vec<Rule<'static>>,
) -> OpResult<()> {
    let mut b = Batch::new();
    b.add(NfListObject::Table(table(family, table_name)));
    b.add(NfListObject::Chain(chain.clone()));
    b.add_cmd(NfCmd::Flush(FlushObject::Chain(chain)));
    for r in rules {
        b.add(NfListObject::Rule(r));
    }
    let fam = nf_family(family).1;
    apply(b, &format!("applying rules in table {fam} {table_name}"))
}

/// Accept forwarded packets from and to `net`, in the table of its family.
pub fn allow_forward(table_name: &str, net: IpNetwork) -> OpResult<()> {
    let f = Family::of(&net);
    let name = chain_for("fwd", net);
    let chain = base_chain(
        f,
        table_name,
        &name,
        NfChainType::Filter,
        NfHook::Forward,
        0,
    );
    let rules = vec![
        rule(
            f,
            table_name,
            &name,
            vec![
                matches(f, "saddr", Operator::EQ, prefix(net)),
                Statement::Accept(None),
            ],
        ),
        rule(
            f,
            table_name,
            &name,
            vec![
                matches(f, "daddr", Operator::EQ, prefix(net)),
                Statement::Accept(None),
            ],
        ),
    ];
    write_chain(f, table_name, chain, rules)
}

/// Masquerade packets from `source` unless they go to one of `except` (all of
/// `source`'s family), in the table of its family.
pub fn masquerade(table_name: &str, source: IpNetwork, except: &[IpNetwork]) -> OpResult<()> {
    let f = Family::of(&source);
    let name = chain_for("masq", source);
    let chain = base_chain(
        f,
        table_name,
        &name,
        NfChainType::NAT,
        NfHook::Postrouting,
        100,
    );
    let mut expr = vec![matches(f, "saddr", Operator::EQ, prefix(source))];
    if !except.is_empty() {
        let set = except
            .iter()
            .map(|n| SetItem::Element(prefix(*n)))
            .collect::<Vec<_>>();
        expr.push(matches(
            f,
            "daddr",
            Operator::NEQ,
            Expression::Named(NamedExpression::Set(set)),
        ));
    }
    expr.push(Statement::Masquerade(None));
    write_chain(f, table_name, chain, vec![rule(f, table_name, &name, expr)])
}

/// The network's table of `family` as nft lists it (the text `restore_table` feeds
/// back), or none if it does not exist.
pub fn save_table(family: Family, table_name: &str) -> OpResult<Option<String>> {
    let fam = nf_family(family).1;
    let out = run_nft(&["list", "table", fam, table_name], None)?;
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No such file") || err.contains("does not exist") {
        return Ok(None);
    }
    check(out, &format!("listing table {fam} {table_name}")).map(|_| None)
}

/// Put the table of `family` back exactly as `save_table` listed it (none: remove it),
/// in one nft transaction: the table never exists half-restored.
pub fn restore_table(family: Family, table_name: &str, saved: Option<&str>) -> OpResult<()> {
    let fam = nf_family(family).1;
    let mut script = format!("table {fam} {table_name}\ndelete table {fam} {table_name}\n");
    if let Some(text) = saved {
        script.push_str(text);
    }
    check(
        run_nft(&["-f", "-"], Some(&script))?,
        &format!("restoring table {fam} {table_name}"),
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_names_do_not_collide() {
        let names: Vec<String> = ["a.b", "a-b", "a_b", "a_2eb", "ab"]
            .iter()
            .map(|n| crate::gate::grants::table_name(n))
            .collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(
            crate::gate::grants::table_name("testnet"),
            "wasm_cni_testnet"
        );
    }
}
