// wasm-cni bridge policy, written in JavaScript.
//
// This is the same policy as the default Rust guest (guest/default): every node has a
// bridge (`cni0`) holding the gateway address, every pod gets a veth pair whose host end
// is plugged into the bridge, addresses come round-robin from the node's pod subnet,
// and traffic leaving the cluster is masqueraded.
//
// The point of this file: the guest does not need Rust. The only interface is the WIT
// world in wit/deps/plugin-0.1.0/world.wit (package wasm-cni:plugin@0.1.0, world
// cni-policy): this guest stays on contract 0.1.0, which the runner keeps serving
// (IPv4 only; wit/world.wit is 0.2.0). The build
// (see build.sh) turns this module into a WebAssembly component that embeds the
// QuickJS engine. How WIT looks from JavaScript:
//
// - Each imported interface is an ES module named by its full WIT name, e.g.
//   `wasm-cni:plugin/links@0.1.0`. Kebab-case names become camelCase:
//   `create-veth` is `links.createVeth`, the record field `host-link` is `req.hostLink`.
// - An enum is a string (`"host"`, `"container"`, `"info"`), an option is the value or
//   `null`, a record is a plain object, a list is an array.
// - A host function returning `result<T, host-error>` returns T, or throws an Error
//   whose `.payload` is the host-error record `{ kind, message }`.
// - We export the interface `policy` as an object with one function per CNI command.
//   Returning means `ok`; throwing a plain object shaped like the WIT record
//   `cni-error` (`{ code, message, details }`) means `err`. Throwing anything else
//   would trap the component, so every command goes through `guarded` (at the end).
//
// QuickJS is a small engine: there is no TextEncoder, no Node.js API, no WASI (the
// build stubs it out). Everything here is plain ECMAScript plus the host imports.

import links from 'wasm-cni:plugin/links@0.1.0';
import addresses from 'wasm-cni:plugin/addresses@0.1.0';
import routes from 'wasm-cni:plugin/routes@0.1.0';
import firewall from 'wasm-cni:plugin/firewall@0.1.0';
import sysctl from 'wasm-cni:plugin/sysctl@0.1.0';
import store from 'wasm-cni:plugin/store@0.1.0';
import log from 'wasm-cni:plugin/log@0.1.0';

// ---------------------------------------------------------------- errors

// CNI error codes. 7 is the spec's "invalid network config", 50 and 51 STATUS's "not
// available" and "not available, and pods may have limited connectivity"; the spec
// leaves 100 and up to plugins. The Rust guest uses the same numbers, so both behave
// alike.
const INVALID_CONFIG = 7;
const NOT_AVAILABLE = 50;
const LIMITED_CONNECTIVITY = 51;
const HOST_FAILED = 100;
const POOL_EXHAUSTED = 101;
const CHECK_FAILED = 102;

// A CNI error, in the shape of the WIT record `cni-error`. Throw it to fail a command.
function cniError(code, message, details = '') {
  return { code, message, details };
}

// Is this value a cni-error we made (as opposed to a JavaScript bug)?
function isCniError(e) {
  return e !== null && typeof e === 'object' && typeof e.code === 'number' &&
    typeof e.message === 'string' && !(e instanceof Error);
}

// The host-error record carried by an exception from a host call, or null if the
// exception came from somewhere else (then it is a bug in this file).
function hostError(e) {
  if (e instanceof Error && e.payload && typeof e.payload.kind === 'string') {
    return e.payload;
  }
  return null;
}

// Run one host call; if the runner refuses, fail the command with code 100 and say
// which step failed ("create veth: link ...: already exists"), like the Rust guest.
function step(what, call) {
  try {
    return call();
  } catch (e) {
    const he = hostError(e);
    if (he) throw cniError(HOST_FAILED, `${what}: ${he.message}`);
    throw e;
  }
}

function info(message) {
  log.write('info', message);
}

// ---------------------------------------------------------------- IPv4 arithmetic

// Addresses are kept as unsigned 32-bit numbers. JavaScript's bit operators work on
// signed 32-bit integers, so every result goes through `>>> 0` to make it unsigned.

// "200.200.1.2" -> 3368550658, or null if it is not a dotted-quad IPv4 address.
// Like Rust's parser: four decimal parts 0..255, no leading zeros ("010" is refused,
// since some tools would read it as octal).
function parseIp(text) {
  if (typeof text !== 'string') return null;
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let n = 0;
  for (const p of parts) {
    if (!/^[0-9]{1,3}$/.test(p) || (p.length > 1 && p[0] === '0')) return null;
    const v = Number(p);
    if (v > 255) return null;
    n = n * 256 + v; // multiplication, not <<, so the number never turns negative
  }
  return n;
}

function formatIp(n) {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

// The netmask of a prefix length. Special case /0: in JavaScript `x << 32` is `x << 0`.
function mask(prefix) {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

// A network such as 200.200.1.0/24: { addr, prefix } plus helpers.
class Net {
  constructor(addr, prefix) {
    this.addr = addr;
    this.prefix = prefix;
  }

  // Parse CIDR text. With `strict`, host bits must be zero (a subnet, not an address).
  // Throws a message string, which parseConfig turns into error code 7.
  static parse(text, strict) {
    const slash = text.indexOf('/');
    if (slash < 0) throw `"${text}" is not in CIDR form (like 200.200.1.0/24)`;
    const a = text.slice(0, slash);
    const p = text.slice(slash + 1);
    const addr = parseIp(a);
    if (addr === null) throw `"${text}": "${a}" is not an IPv4 address`;
    if (!/^[0-9]+$/.test(p) || Number(p) > 32) {
      throw `"${text}": prefix "${p}" is not a number from 0 to 32`;
    }
    const net = new Net(addr, Number(p));
    if (strict && net.network() !== addr) {
      const meant = `${formatIp(net.network())}/${net.prefix}`;
      throw `"${text}" is not a subnet: host bits are set (did you mean ${meant}?)`;
    }
    return net;
  }

  network() {
    return (this.addr & mask(this.prefix)) >>> 0;
  }

  broadcast() {
    return (this.addr | ~mask(this.prefix)) >>> 0;
  }

  contains(ip) {
    return ((ip & mask(this.prefix)) >>> 0) === this.network();
  }

  // True if all of `inner` lies inside this network.
  covers(inner) {
    return inner.prefix >= this.prefix && this.contains(inner.network());
  }

  toString() {
    return `${formatIp(this.addr)}/${this.prefix}`;
  }
}

// ---------------------------------------------------------------- config

// The settings this policy reads from the network config the runtime sent (the same
// fields as the Rust guest, so one conflist works with either guest):
//   myHostNetwork  the node network (the cloud VPC): not masqueraded
//   myPodNetwork   the whole cluster's pod network: forwarded, not masqueraded
//   myPodSubnet    this node's slice of the pod network: where pod addresses come from
//   bridge         bridge name, default "cni0"
//   mtu            MTU for the bridge and veths, default: the kernel's
// Anything wrong is error 7, with a message that says what to fix.
function parseConfig(json) {
  try {
    return readConfig(json);
  } catch (e) {
    if (typeof e === 'string') throw cniError(INVALID_CONFIG, e);
    throw e;
  }
}

function readConfig(json) {
  let raw;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw `network config: ${e.message}`;
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw 'network config: not a JSON object';
  }
  const field = (name) => {
    const v = raw[name];
    if (v === undefined || v === null) throw `missing field "${name}" (a CIDR)`;
    if (typeof v !== 'string') throw `${name}: expected a string (a CIDR), got ${JSON.stringify(v)}`;
    try {
      return Net.parse(v, true);
    } catch (msg) {
      throw `${name}: ${msg}`;
    }
  };
  const hostNetwork = field('myHostNetwork');
  const podNetwork = field('myPodNetwork');
  const podSubnet = field('myPodSubnet');
  if (!podNetwork.covers(podSubnet)) {
    throw `myPodSubnet ${podSubnet} is not inside myPodNetwork ${podNetwork}`;
  }
  // A /31 or /32 leaves no address for a pod once the gateway has one.
  if (podSubnet.prefix > 30) {
    throw `myPodSubnet ${podSubnet} is too small: it needs room for a gateway and pods (/30 or larger)`;
  }
  const bridge = raw.bridge === undefined || raw.bridge === null ? 'cni0' : raw.bridge;
  // Linux interface names: at most 15 bytes, no '/', no whitespace; ':' would be an alias.
  if (typeof bridge !== 'string' || bridge === '' || bridge.length > 15 || /[/ :]/.test(bridge)) {
    throw `bridge ${JSON.stringify(bridge)} is not a valid interface name`;
  }
  let mtu = null; // null is WIT's `none`: the runner then keeps the kernel's default
  if (raw.mtu !== undefined && raw.mtu !== null) {
    if (!Number.isInteger(raw.mtu) || raw.mtu < 0 || raw.mtu > 0xffffffff) {
      throw `mtu: expected a whole number, got ${JSON.stringify(raw.mtu)}`;
    }
    if (raw.mtu < 576 || raw.mtu > 65535) throw `mtu ${raw.mtu} is out of range (576..65535)`;
    mtu = raw.mtu;
  }
  return {
    hostNetwork,
    podNetwork,
    podSubnet,
    bridge,
    mtu,
    // The gateway is the subnet's first address; it lives on the bridge.
    gateway: formatIp(podSubnet.network() + 1),
  };
}

// What node setup depends on. ADD stores it under `node/setup` once the node is set
// up, so later ADDs only check the bridge instead of redoing everything. The text is
// exactly the Rust guest's (`mtu=None` / `mtu=Some(1500)` is Rust's notation), so a
// node can switch between the two guests without redoing its setup.
function fingerprint(cfg) {
  const mtu = cfg.mtu === null ? 'None' : `Some(${cfg.mtu})`;
  return `v1 bridge=${cfg.bridge} gw=${cfg.gateway}/${cfg.podSubnet.prefix} ` +
    `pods=${cfg.podNetwork} hosts=${cfg.hostNetwork} mtu=${mtu}`;
}

// ---------------------------------------------------------------- IPAM

// Address management in the node's pod subnet, kept in the runner's store (a small
// key-value store private to this network on this node). The runner holds the
// network's lock for the whole call, so no other pod's call runs in between our reads
// and writes. Same keys as the Rust guest:
//   ip/<address>                   -> "<container-id> <ifname>"  (who holds the address)
//   attach/<container-id>/<ifname> -> "<address>"                (what an attachment holds)
//   last                           -> the address handed out last (round-robin start)
// The ip/ key is written first, so an interrupted ADD leaves at worst an ip/ key whose
// owner a later DEL or GC finds by scanning.

// The store's host functions throw on failure; IPAM reports that as code 100.
function storeCall(call) {
  try {
    return call();
  } catch (e) {
    const he = hostError(e);
    if (he) throw cniError(HOST_FAILED, `address store: ${he.message}`);
    throw e;
  }
}

const attachKey = (cid, ifname) => `attach/${cid}/${ifname}`;
const owner = (cid, ifname) => `${cid} ${ifname}`;

// Reserve an address for (cid, ifname), or return the one it already holds (so a
// repeated ADD never gives one attachment two addresses). Pods get network+2 up to
// broadcast-1 (network+1 is the gateway), starting after the address handed out last,
// so a just-freed address is not given to the next pod at once.
function allocate(subnet, cid, ifname) {
  return storeCall(() => {
    const held = parseIp(store.get(attachKey(cid, ifname)));
    if (held !== null && subnet.contains(held)) return held;

    const first = subnet.network() + 2;
    const last = subnet.broadcast() - 1;
    const size = last - first + 1;
    const prev = parseIp(store.get('last'));
    const start = prev !== null && prev >= first && prev < last ? prev + 1 : first;
    for (let i = 0; i < size; i++) {
      const candidate = first + ((start - first + i) % size);
      const text = formatIp(candidate);
      const key = `ip/${text}`;
      if (store.get(key) === null) {
        store.put(key, owner(cid, ifname)); // the reservation first (see above)
        store.put(attachKey(cid, ifname), text);
        store.put('last', text);
        return candidate;
      }
    }
    throw cniError(POOL_EXHAUSTED,
      `no free address in ${subnet}: all ${size} pod addresses are in use`);
  });
}

// Release what (cid, ifname) holds. Returns the released address text, or null.
// Without the attach/ key (an ADD interrupted between its writes) it scans the ip/ keys.
function release(cid, ifname) {
  return storeCall(() => {
    const me = owner(cid, ifname);
    const akey = attachKey(cid, ifname);
    const ip = store.get(akey);
    if (ip !== null) {
      const key = `ip/${ip}`;
      // Only free the address if it is still ours (never someone else's reservation).
      if (store.get(key) === me) store.delete(key);
      store.delete(akey);
      return parseIp(ip) === null ? null : ip;
    }
    let released = null;
    for (const key of store.list('ip/')) {
      if (store.get(key) === me) {
        store.delete(key);
        released = key.slice('ip/'.length);
      }
    }
    return released;
  });
}

// Every attachment that holds something, from both key families, sorted, no duplicates.
function holders() {
  return storeCall(() => {
    const seen = new Map(); // "cid ifname" -> [cid, ifname]
    for (const key of store.list('attach/')) {
      const rest = key.slice('attach/'.length);
      const slash = rest.indexOf('/');
      if (slash >= 0) seen.set(`${rest.slice(0, slash)} ${rest.slice(slash + 1)}`,
        [rest.slice(0, slash), rest.slice(slash + 1)]);
    }
    for (const key of store.list('ip/')) {
      const v = store.get(key);
      const space = v === null ? -1 : v.indexOf(' ');
      if (space >= 0) seen.set(v, [v.slice(0, space), v.slice(space + 1)]);
    }
    return [...seen.values()].sort((a, b) =>
      a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0);
  });
}

// ---------------------------------------------------------------- node setup

// Set up the node once: the bridge with the gateway address, IPv4 forwarding, and the
// firewall rules. Every step checks before it changes, so running it again is harmless,
// and the stored fingerprint lets later ADDs skip it when nothing changed.
function ensureNode(cfg) {
  const fp = fingerprint(cfg);
  const bridge = step('look up bridge', () => links.get('host', cfg.bridge));
  if (bridge !== null) {
    const done = step('read node state', () => store.get('node/setup'));
    if (bridge.up && done === fp) return;
  }
  info(`setting up node: ${fp}`);
  if (bridge === null) {
    step('create bridge', () => links.createBridge(cfg.bridge, cfg.mtu));
  }
  // The gateway address on the bridge makes the node the pods' first hop; the kernel
  // adds the route to the pod subnet through the bridge with it.
  const gw = `${cfg.gateway}/${cfg.podSubnet.prefix}`;
  const have = step('list bridge addresses', () => addresses.list('host', cfg.bridge));
  if (!have.includes(gw)) {
    step('add gateway address', () => addresses.add('host', cfg.bridge, gw));
  }
  step('bring bridge up', () => links.setUp('host', cfg.bridge));
  // The node routes pod traffic to other nodes and to the outside.
  const fwd = step('read ip_forward', () => sysctl.get('host', 'net.ipv4.ip_forward'));
  if (fwd.trim() !== '1') {
    step('enable ip_forward', () => sysctl.set('host', 'net.ipv4.ip_forward', '1'));
  }
  setUpFirewall(cfg);
  step('record node state', () => store.put('node/setup', fp));
}

// Firewall: accept forwarded pod traffic, and masquerade what leaves the cluster. Pod
// to pod and pod to node traffic keeps its pod source address (that is the lab's rule:
// only the outside world sees the node's address).
function setUpFirewall(cfg) {
  step('allow forwarding', () => firewall.allowForward(cfg.podNetwork.toString()));
  const except = [cfg.podNetwork.toString(), cfg.hostNetwork.toString()];
  step('masquerade', () => firewall.masquerade(cfg.podSubnet.toString(), except));
}

// ---------------------------------------------------------------- ADD

function add(req) {
  const cfg = parseConfig(req.config);
  ensureNode(cfg);
  const ip = formatIp(allocate(cfg.podSubnet, req.containerId, req.ifname));

  // The runner decides the host end's name (req.hostLink): it is the only prefixed host
  // link this call may create, so one pod's call can never touch another pod's link.
  const hostName = req.hostLink;
  // A host end left by an earlier, interrupted ADD of this attachment is stale.
  if (step('look up host veth', () => links.get('host', hostName)) !== null) {
    step('remove stale host veth', () => links.delete('host', hostName));
  }
  if (step('look up container interface', () => links.get('container', req.ifname)) !== null) {
    throw cniError(HOST_FAILED, `interface "${req.ifname}" already exists in the container`);
  }
  const pair = step('create veth', () => links.createVeth(hostName, req.ifname, cfg.mtu));
  step('attach veth to bridge', () => links.setMaster(hostName, cfg.bridge));
  step('bring host veth up', () => links.setUp('host', hostName));

  const cidr = `${ip}/${cfg.podSubnet.prefix}`;
  step('add pod address', () => addresses.add('container', req.ifname, cidr));
  step('bring pod interface up', () => links.setUp('container', req.ifname));
  step('add default route', () => routes.add('container', {
    destination: '0.0.0.0/0',
    gateway: cfg.gateway,
    link: req.ifname,
  }));
  info(`pod ${req.containerId} got ${cidr} on ${hostName}`);

  // The WIT record add-result; the runner turns it into the CNI result JSON of the
  // network's cniVersion (and fills in the sandbox path for `sandbox: true`).
  return {
    interfaces: [
      { name: hostName, mac: pair.host.mac, sandbox: false },
      { name: req.ifname, mac: pair.container.mac, sandbox: true },
    ],
    ips: [{ address: cidr, gateway: cfg.gateway, interface: 1 }], // index 1: the pod end
    routes: [{ destination: '0.0.0.0/0', gateway: cfg.gateway }],
    dns: null,
  };
}

// ---------------------------------------------------------------- DEL

// Remove the host end of an attachment's veth; the kernel removes the pod end with it.
// "Not found" is success: DEL must work when things are already gone.
function removeHostVeth(hostName) {
  try {
    links.delete('host', hostName);
  } catch (e) {
    const he = hostError(e);
    if (he && he.kind === 'not-found') return;
    if (he) throw cniError(HOST_FAILED, `remove host veth: ${he.message}`);
    throw e;
  }
}

function del(req) {
  // DEL reads nothing from the config: names come from the request and state from the
  // store, so a DEL still cleans up after the config was broken or changed.
  removeHostVeth(req.hostLink);
  const freed = release(req.containerId, req.ifname);
  if (freed !== null) info(`pod ${req.containerId} released ${freed}`);
}

// ---------------------------------------------------------------- CHECK

// JSON values from prevResult can be anything; read a field only from a real object.
function jsonField(obj, key) {
  return obj !== null && typeof obj === 'object' && !Array.isArray(obj) ? obj[key] : undefined;
}

function asArray(v) {
  return Array.isArray(v) ? v : [];
}

// CHECK: is what ADD reported (the config's prevResult) still in place?
function check(req) {
  const cfg = parseConfig(req.config);
  // prevResult is the result ADD returned, which the runtime hands back for CHECK.
  const prev = jsonField(JSON.parse(req.config), 'prevResult'); // parseConfig has shown it parses
  if (prev === null || typeof prev !== 'object' || Array.isArray(prev)) {
    throw cniError(INVALID_CONFIG, 'CHECK needs prevResult in the network config');
  }
  const failed = (message) => cniError(CHECK_FAILED, message);
  const ifaces = asArray(jsonField(prev, 'interfaces'));

  // The pod's interface: there and up...
  const pod = step('look up container interface', () => links.get('container', req.ifname));
  if (pod === null) throw failed(`interface "${req.ifname}" is missing in the container`);
  if (!pod.up) throw failed(`interface "${req.ifname}" in the container is down`);
  // ...with the MAC address ADD reported (a different MAC means it was recreated).
  // (the pod end is the interface with our name that has a `sandbox` path)
  const reported = ifaces.find((i) =>
    jsonField(i, 'name') === req.ifname && jsonField(i, 'sandbox') !== undefined);
  const mac = jsonField(reported, 'mac');
  if (typeof mac === 'string' && mac.toLowerCase() !== pod.mac.toLowerCase()) {
    throw failed(`interface "${req.ifname}" has MAC ${pod.mac} instead of ${mac}`);
  }

  // Every address reported on the pod's interface is still on it.
  const have = step('list pod addresses', () => addresses.list('container', req.ifname));
  for (const ip of asArray(jsonField(prev, 'ips'))) {
    const index = jsonField(ip, 'interface');
    const onPod = Number.isInteger(index) && index >= 0
      ? jsonField(ifaces[index], 'name') === req.ifname
      : true; // no interface index: assume the pod's
    const addr = jsonField(ip, 'address');
    if (typeof addr !== 'string') continue;
    if (onPod && !have.includes(addr)) {
      throw failed(`address ${addr} is missing on "${req.ifname}"`);
    }
  }

  // Every reported route is still in the container's table (CNI result JSON names
  // them `dst` and `gw`).
  const table = step('list pod routes', () => routes.list('container', null));
  for (const r of asArray(jsonField(prev, 'routes'))) {
    const dst = jsonField(r, 'dst');
    if (typeof dst !== 'string') continue;
    const gw = typeof jsonField(r, 'gw') === 'string' ? jsonField(r, 'gw') : null;
    if (!table.some((t) => t.destination === dst && (gw === null || t.gateway === gw))) {
      throw failed(`route to ${dst} is missing in the container`);
    }
  }

  // The node side: the host end of the veth and the bridge.
  if (step('look up host veth', () => links.get('host', req.hostLink)) === null) {
    throw failed(`host veth ${req.hostLink} is missing`);
  }
  if (step('look up bridge', () => links.get('host', cfg.bridge)) === null) {
    throw failed(`bridge ${cfg.bridge} is missing`);
  }
}

// ---------------------------------------------------------------- GC and STATUS

// GC: the runtime lists the attachments that are still valid; release everything held
// for any other one (its host veth and its address). The store tells us who holds what,
// and links.attachmentLink gives the host link name any attachment would have.
function gc(valid) {
  for (const [cid, ifname] of holders()) {
    if (valid.some((a) => a.containerId === cid && a.ifname === ifname)) continue;
    removeHostVeth(links.attachmentLink(cid, ifname));
    const freed = release(cid, ifname);
    info(`gc: released ${cid}/${ifname} (${freed === null ? 'no address' : freed})`);
  }
}

// STATUS: 7 for a bad config; 50 when the store does not answer (no ADD can reserve an
// address); when pods hold addresses (ip/ keys), 51 if what they depend on is broken:
// the bridge gone or down, or ip_forward off. Without pods the node is ready whatever
// its setup: the next ADD sets it up again.
function status(config) {
  const cfg = parseConfig(config);
  let pods;
  try {
    pods = store.list('ip/').length;
  } catch (e) {
    const he = hostError(e);
    if (he) throw cniError(NOT_AVAILABLE, `store unusable: ${he.message}`);
    throw e;
  }
  if (pods === 0) return;
  const bridge = step('look up bridge', () => links.get('host', cfg.bridge));
  let problem = null;
  if (bridge === null) {
    problem = `bridge ${cfg.bridge} is missing`;
  } else if (!bridge.up) {
    problem = `bridge ${cfg.bridge} is down`;
  } else if (step('read ip_forward', () => sysctl.get('host', 'net.ipv4.ip_forward')).trim() !== '1') {
    problem = 'net.ipv4.ip_forward is off';
  }
  if (problem !== null) {
    throw cniError(
      LIMITED_CONNECTIVITY,
      `${problem}: the ${pods} pod address(es) in use may have limited connectivity`,
    );
  }
}

// ---------------------------------------------------------------- exports

// Run a command; a cni-error we threw goes back to the runner as WIT `err`. Any other
// exception is a bug in this file (a TypeError, say): report it as code 100 with the
// JavaScript message, rather than trapping, which would tell the user much less.
function guarded(name, run) {
  try {
    return run();
  } catch (e) {
    if (isCniError(e)) throw e;
    const he = hostError(e);
    const what = he ? `host error ${he.kind}: ${he.message}` : String(e);
    const stack = e instanceof Error && e.stack ? e.stack : '';
    log.write('error', `${name}: unexpected exception: ${what} ${stack}`);
    throw cniError(HOST_FAILED, `js-bridge guest: unexpected exception in ${name}: ${what}`, stack);
  }
}

// The exported WIT interface `policy`.
export const policy = {
  add: (req) => guarded('add', () => add(req)),
  del: (req) => guarded('del', () => del(req)),
  check: (req) => guarded('check', () => check(req)),
  gc: (_config, valid) => guarded('gc', () => gc(valid)),
  status: (config) => guarded('status', () => status(config)),
};
