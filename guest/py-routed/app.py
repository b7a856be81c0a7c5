"""wasm-cni routed policy, written in Python.

The same policy as the Rust starter (guest/routed): point-to-point wiring, no bridge.
For each pod:
- a veth pair: `eth0` in the pod, the attachment's `host-link` on the node;
- the pod address as a /32 on `eth0`, a link route to the gateway and a default route
  via it (the pod has no subnet: everything goes through the node);
- the gateway address (the subnet's first address) as a /32 on the host end, so the
  node answers the pod's ARP for it; the same /32 sits on every pod's host end;
- a /32 route on the node to the pod through its host end.
Node setup (once): ip_forward, forwarding and masquerade rules for traffic leaving
the cluster. Same config fields, IPAM, store keys and error codes as the Rust guests
(guest/kit), and the same messages, so `wasm-cni simulate` prints byte-for-byte the
Rust routed guest's session.

How WIT looks from Python (componentize-py generates the `wit_world` package from
wit/world.wit at build time; `componentize-py -d wit -w cni-policy bindings DIR`
writes it out to read):
- `import links;` is the module `wit_world.imports.links`; kebab-case becomes
  snake_case: `create-veth` is `links.create_veth`, the field `host-link` is
  `req.host_link`. A record is a dataclass, an enum an `Enum` (`Netns.HOST`), an
  option the value or `None`, a list a list, a tuple a tuple.
- An import returning `result<T, host-error>` returns T or raises
  `componentize_py_types.Err` whose `.value` is the `HostError` (kind, message).
- `export policy;` is a class named `Policy` in this module with one method per
  function (`del` is a Python keyword: the method is `del_`). Returning is `ok`;
  raising `Err(CniError(...))` is `err`. Any other exception would trap the
  component, so every method runs through `guarded`.
- Each call runs in a fresh instance: module globals do not survive between calls.
"""

import json
import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.policy import (
    AddResult,
    CniError,
    IpConfig,
    ResultInterface,
    ResultRoute,
)
from wit_world.imports import addresses, firewall, links, log, routes, store, sysctl
from wit_world.imports.routes import Route
from wit_world.imports.types import ErrorKind, Netns

# Error codes: CNI's 7 "invalid network config", STATUS's 50 "not available" and 51
# "not available, and pods may have limited connectivity"; 100 and up are the policy's.
INVALID_CONFIG = 7
NOT_AVAILABLE = 50
LIMITED_CONNECTIVITY = 51
HOST_FAILED = 100
POOL_EXHAUSTED = 101
CHECK_FAILED = 102


def cni(code, message, details=""):
    """A failure of the command: raise it (`raise cni(...)`) to answer WIT `err`."""
    return Err(CniError(code=code, message=message, details=details))


def step(what, call, *args):
    """One host call; a host error fails the command with code 100, naming the step."""
    try:
        return call(*args)
    except Err as e:
        raise cni(HOST_FAILED, f"{what}: {e.value.message}")


def info(message):
    log.write(log.Level.INFO, message)


def q(text):
    """A string quoted the way the Rust guests print one (`{:?}`): same messages."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\0":
            out.append("\\0")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\u{%x}" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def some(value):
    """An optional value as Rust's `{:?}` prints it (the log lines are the Rust guest's)."""
    return "None" if value is None else f"Some({value})"


# ---------------------------------------------------------------- IPv4 arithmetic
# Addresses are ints (0 .. 2**32-1); a network is (address, prefix).

OCTET = re.compile(r"0|[1-9][0-9]{0,2}")


def parse_ip(text):
    """"200.200.1.2" -> int, or None. Like Rust's parser: four decimal parts 0..255,
    no leading zeros (some tools read "010" as octal)."""
    if not isinstance(text, str):
        return None
    parts = text.split(".")
    if len(parts) != 4 or not all(OCTET.fullmatch(p) and int(p) <= 255 for p in parts):
        return None
    n = 0
    for p in parts:
        n = n * 256 + int(p)
    return n


def fmt_ip(n):
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


class Net:
    """An IPv4 network such as 200.200.1.0/24."""

    def __init__(self, addr, prefix):
        self.addr, self.prefix = addr, prefix

    @staticmethod
    def parse(text, strict):
        """Parse CIDR text; with `strict`, host bits must be zero. Raises ValueError
        with the message for code 7."""
        if "/" not in text:
            raise ValueError(f"{q(text)} is not in CIDR form (like 200.200.1.0/24)")
        a, p = text.split("/", 1)
        addr = parse_ip(a)
        if addr is None:
            raise ValueError(f"{q(text)}: {q(a)} is not an IPv4 address")
        if not re.fullmatch(r"\+?[0-9]+", p) or int(p) > 32:  # Rust's u8 parse takes "+24"
            raise ValueError(f"{q(text)}: prefix {q(p)} is not a number from 0 to 32")
        net = Net(addr, int(p))
        if strict and net.network() != addr:
            raise ValueError(
                f"{q(text)} is not a subnet: host bits are set "
                f"(did you mean {fmt_ip(net.network())}/{net.prefix}?)"
            )
        return net

    def mask(self):
        return (0xFFFFFFFF << (32 - self.prefix)) & 0xFFFFFFFF

    def network(self):
        return self.addr & self.mask()

    def broadcast(self):
        return self.addr | (~self.mask() & 0xFFFFFFFF)

    def contains(self, ip):
        return ip & self.mask() == self.network()

    def covers(self, inner):
        return inner.prefix >= self.prefix and self.contains(inner.network())

    def __str__(self):
        return f"{fmt_ip(self.addr)}/{self.prefix}"


# ---------------------------------------------------------------- config


class Config:
    """The settings the shipped policies read from the network config:
    myHostNetwork (not masqueraded), myPodNetwork (forwarded), myPodSubnet (this
    node's pod addresses), bridge (default cni0; unused here), mtu (default: the
    kernel's). Raises ValueError with the message for code 7."""

    def __init__(self, text):
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise ValueError(f"network config: {e}")
        if not isinstance(raw, dict):
            raise ValueError("network config: not a JSON object")

        def field(name):
            v = raw.get(name)
            if v is None:
                raise ValueError(f"missing field {q(name)} (a CIDR)")
            if not isinstance(v, str):
                raise ValueError(f"{name}: expected a string (a CIDR), got {json.dumps(v)}")
            try:
                return Net.parse(v, True)
            except ValueError as e:
                raise ValueError(f"{name}: {e}")

        self.host_network = field("myHostNetwork")
        self.pod_network = field("myPodNetwork")
        self.pod_subnet = field("myPodSubnet")
        if not self.pod_network.covers(self.pod_subnet):
            raise ValueError(f"myPodSubnet {self.pod_subnet} is not inside myPodNetwork {self.pod_network}")
        if self.pod_subnet.prefix > 30:
            raise ValueError(
                f"myPodSubnet {self.pod_subnet} is too small: it needs room for a gateway and pods (/30 or larger)"
            )
        bridge = raw.get("bridge")
        bridge = "cni0" if bridge is None else bridge
        if not isinstance(bridge, str):
            raise ValueError(f"bridge: expected a string, got {json.dumps(bridge)}")
        if bridge == "" or len(bridge.encode()) > 15 or any(c in bridge for c in "/ :"):
            raise ValueError(f"bridge {q(bridge)} is not a valid interface name")
        self.bridge = bridge
        mtu = raw.get("mtu")
        if mtu is not None:
            # bool is an int in Python; JSON true is not an MTU
            if isinstance(mtu, bool) or not isinstance(mtu, int) or not 0 <= mtu <= 0xFFFFFFFF:
                raise ValueError(f"mtu: expected a whole number, got {json.dumps(mtu)}")
            if not 576 <= mtu <= 65535:
                raise ValueError(f"mtu {mtu} is out of range (576..65535)")
        self.mtu = mtu
        self.gateway = fmt_ip(self.pod_subnet.network() + 1)


def config(text):
    try:
        return Config(text)
    except ValueError as e:
        raise cni(INVALID_CONFIG, str(e))


# ---------------------------------------------------------------- IPAM
# In the runner's store, the Rust guests' keys:
#   ip/<address>                   -> "<container-id> <ifname>"  (who holds it)
#   attach/<container-id>/<ifname> -> "<address>"                (what it holds)
#   last                           -> the address handed out last
# The ip/ key is written first: an interrupted ADD leaves at worst an ip/ key whose
# owner a later DEL or GC finds by scanning.


def store_call(call, *args):
    try:
        return call(*args)
    except Err as e:
        raise cni(HOST_FAILED, f"address store: {e.value.message}")


def attach_key(cid, ifname):
    return f"attach/{cid}/{ifname}"


def owner(cid, ifname):
    return f"{cid} {ifname}"


def allocate(subnet, cid, ifname):
    """The address of (cid, ifname): the one it holds, or the next free one after the
    last handed out (network+2 .. broadcast-1; network+1 is the gateway)."""
    held = parse_ip(store_call(store.get, attach_key(cid, ifname)))
    if held is not None and subnet.contains(held):
        return held
    first = subnet.network() + 2
    last = subnet.broadcast() - 1
    size = last - first + 1
    prev = parse_ip(store_call(store.get, "last"))
    start = prev + 1 if prev is not None and first <= prev < last else first
    for i in range(size):
        candidate = first + (start - first + i) % size
        key = f"ip/{fmt_ip(candidate)}"
        if store_call(store.get, key) is None:
            store_call(store.put, key, owner(cid, ifname))
            store_call(store.put, attach_key(cid, ifname), fmt_ip(candidate))
            store_call(store.put, "last", fmt_ip(candidate))
            return candidate
    raise cni(POOL_EXHAUSTED, f"no free address in {subnet}: all {size} pod addresses are in use")


def release(cid, ifname):
    """Free what (cid, ifname) holds; the address text, or None."""
    me = owner(cid, ifname)
    akey = attach_key(cid, ifname)
    ip = store_call(store.get, akey)
    if ip is not None:
        key = f"ip/{ip}"
        if store_call(store.get, key) == me:  # never free someone else's reservation
            store_call(store.delete, key)
        store_call(store.delete, akey)
        return ip if parse_ip(ip) is not None else None
    released = None
    for key in store_call(store.list, "ip/"):
        if store_call(store.get, key) == me:
            store_call(store.delete, key)
            rest = key[len("ip/"):]
            released = rest if parse_ip(rest) is not None else None
    return released


def holders():
    """Every (cid, ifname) that holds something, from both key families, sorted."""
    found = set()
    for key in store_call(store.list, "attach/"):
        rest = key[len("attach/"):]
        if "/" in rest:
            found.add(tuple(rest.split("/", 1)))
    for key in store_call(store.list, "ip/"):
        value = store_call(store.get, key)
        if value is not None and " " in value:
            found.add(tuple(value.split(" ", 1)))
    return sorted(found)


# ---------------------------------------------------------------- prevResult (CHECK)


def field(obj, key):
    return obj.get(key) if isinstance(obj, dict) else None


def as_list(value):
    return value if isinstance(value, list) else []


def index(value):
    """A JSON number usable as a list index (serde's as_u64), else None."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64
    return value if ok else None


class Expected:
    """What CHECK should find in the container: read from the config's prevResult."""

    def __init__(self, text, ifname):
        prev = field(json.loads(text), "prevResult")
        if not isinstance(prev, dict):
            raise cni(INVALID_CONFIG, "CHECK needs prevResult in the network config")
        ifaces = as_list(prev.get("interfaces"))
        pod = next((i for i in ifaces if field(i, "name") == ifname and isinstance(i, dict) and "sandbox" in i), None)
        mac = field(pod, "mac")
        self.mac = mac if isinstance(mac, str) else None
        self.addresses = []
        for ip in as_list(prev.get("ips")):
            i = index(field(ip, "interface"))
            # an address without an interface index is taken to be the pod's
            on_pod = i is None or (i < len(ifaces) and field(ifaces[i], "name") == ifname)
            address = field(ip, "address")
            if on_pod and isinstance(address, str):
                self.addresses.append(address)
        self.routes = []
        for r in as_list(prev.get("routes")):
            dst, gw = field(r, "dst"), field(r, "gw")
            if isinstance(dst, str):
                self.routes.append((dst, gw if isinstance(gw, str) else None))

    def check_link(self, ifname, found):
        if found is None:
            raise cni(CHECK_FAILED, f"interface {q(ifname)} is missing in the container")
        if not found.up:
            raise cni(CHECK_FAILED, f"interface {q(ifname)} in the container is down")
        # MACs compare without regard to ASCII case
        if self.mac is not None and self.mac.encode().lower() != found.mac.encode().lower():
            raise cni(CHECK_FAILED, f"interface {q(ifname)} has MAC {found.mac} instead of {self.mac}")

    def check_config(self, ifname, have, table):
        for a in self.addresses:
            if a not in have:
                raise cni(CHECK_FAILED, f"address {a} is missing on {q(ifname)}")
        for dst, gw in self.routes:
            if not any(d == dst and (gw is None or g == gw) for d, g in table):
                raise cni(CHECK_FAILED, f"route to {dst} is missing in the container")


# ---------------------------------------------------------------- the commands


def ensure_node(cfg):
    """Forwarding and masquerade, once per node (a stored fingerprint says it is done)."""
    mtu = some(cfg.mtu)
    fingerprint = (
        f"routed v1 gw={cfg.gateway}/32 subnet={cfg.pod_subnet} "
        f"pods={cfg.pod_network} hosts={cfg.host_network} mtu={mtu}"
    )
    if step("read node state", store.get, "node/setup") == fingerprint:
        return
    info(f"setting up node: {fingerprint}")
    if step("read ip_forward", sysctl.get, Netns.HOST, "net.ipv4.ip_forward").strip() != "1":
        step("enable ip_forward", sysctl.set, Netns.HOST, "net.ipv4.ip_forward", "1")
    step("allow forwarding", firewall.allow_forward, str(cfg.pod_network))
    except_ = [str(cfg.pod_network), str(cfg.host_network)]
    step("masquerade", firewall.masquerade, str(cfg.pod_subnet), except_)
    step("record node state", store.put, "node/setup", fingerprint)


def add(req):
    cfg = config(req.config)
    ensure_node(cfg)
    ip = fmt_ip(allocate(cfg.pod_subnet, req.container_id, req.ifname))
    host = req.host_link
    # a host end left by an interrupted ADD of this same attachment is stale
    if step("look up host veth", links.get, Netns.HOST, host) is not None:
        step("remove stale host veth", links.delete, Netns.HOST, host)
    pair = step("create veth", links.create_veth, host, req.ifname, cfg.mtu)
    gw = cfg.gateway
    pod = f"{ip}/32"

    # node side: the gateway /32 on the host end, the route to the pod through it
    step("add gateway address", addresses.add, Netns.HOST, host, f"{gw}/32")
    step("bring host veth up", links.set_up, Netns.HOST, host)
    step("add route to pod", routes.add, Netns.HOST, Route(destination=pod, gateway=None, link=host))

    # pod side: the /32, the gateway reachable on the link, the default route via it
    step("add pod address", addresses.add, Netns.CONTAINER, req.ifname, pod)
    step("bring pod interface up", links.set_up, Netns.CONTAINER, req.ifname)
    to_gw = Route(destination=f"{gw}/32", gateway=None, link=req.ifname)
    step("add route to gateway", routes.add, Netns.CONTAINER, to_gw)
    default = Route(destination="0.0.0.0/0", gateway=gw, link=req.ifname)
    step("add default route", routes.add, Netns.CONTAINER, default)
    info(f"pod {req.container_id} got {pod} on {host}")
    return AddResult(
        interfaces=[
            ResultInterface(name=host, mac=pair.host.mac, sandbox=False),
            ResultInterface(name=req.ifname, mac=pair.container.mac, sandbox=True),
        ],
        ips=[IpConfig(address=pod, gateway=gw, interface=1)],  # 1: the pod end
        routes=[
            ResultRoute(destination=f"{gw}/32", gateway=None),
            ResultRoute(destination="0.0.0.0/0", gateway=gw),
        ],
        dns=None,
    )


def remove_host_veth(name):
    """Remove an attachment's host end; the pod end and the node's route to the pod
    go with it. Already gone is fine (DEL must succeed twice)."""
    try:
        links.delete(Netns.HOST, name)
    except Err as e:
        if e.value.kind != ErrorKind.NOT_FOUND:
            raise cni(HOST_FAILED, f"remove host veth: {e.value.message}")


def del_(req):
    # needs nothing from the config: names are derived, state is in the store
    remove_host_veth(req.host_link)
    ip = release(req.container_id, req.ifname)
    if ip is not None:
        info(f"pod {req.container_id} released {ip}")


def check(req):
    cfg = config(req.config)
    want = Expected(req.config, req.ifname)
    # pod side: what is found against the result
    pod = step("look up container interface", links.get, Netns.CONTAINER, req.ifname)
    want.check_link(req.ifname, pod)
    have = step("list pod addresses", addresses.list, Netns.CONTAINER, req.ifname)
    table = [(r.destination, r.gateway) for r in step("list pod routes", routes.list, Netns.CONTAINER, None)]
    want.check_config(req.ifname, have, table)
    # node side: the host end, and a route to each pod address through it
    host = req.host_link
    if step("look up host veth", links.get, Netns.HOST, host) is None:
        raise cni(CHECK_FAILED, f"host veth {host} is missing")
    node_routes = step("list node routes", routes.list, Netns.HOST, host)
    for a in want.addresses:
        dst = a.split("/")[0] + "/32"
        if not any(r.destination == dst for r in node_routes):
            raise cni(CHECK_FAILED, f"node route to {dst} via {host} is missing")
    gw = f"{cfg.gateway}/32"
    if gw not in step("list host addresses", addresses.list, Netns.HOST, host):
        raise cni(CHECK_FAILED, f"gateway {gw} is missing on {host}")


def gc(valid):
    keep = {(a.container_id, a.ifname) for a in valid}
    for cid, ifname in holders():
        if (cid, ifname) in keep:
            continue
        remove_host_veth(links.attachment_link(cid, ifname))
        freed = release(cid, ifname)
        info(f"gc: released {cid}/{ifname} ({some(freed)})")


def status(text):
    """7 for a bad config; 50 when the store does not answer (no ADD can reserve an
    address); 51 when pods hold addresses (ip/ keys) and ip_forward is off (every packet
    of a pod goes through the node). Without pods the node is ready: ADD sets it up."""
    config(text)
    try:
        pods = len(store.list("ip/"))
    except Err as e:
        raise cni(NOT_AVAILABLE, f"store unusable: {e.value.message}")
    if pods == 0:
        return
    if step("read ip_forward", sysctl.get, Netns.HOST, "net.ipv4.ip_forward").strip() != "1":
        raise cni(
            LIMITED_CONNECTIVITY,
            f"net.ipv4.ip_forward is off: the {pods} pod address(es) in use may have limited connectivity",
        )


# ---------------------------------------------------------------- the export


def guarded(name, run, *args):
    """Run a command. Our `Err` goes back as WIT `err`; any other exception (a bug in
    this file) becomes error 100 naming it, instead of a trap that tells less."""
    try:
        return run(*args)
    except Err:
        raise
    except Exception as e:  # noqa: BLE001 - a bug: report it rather than trap
        message = f"{type(e).__name__}: {e}"
        log.write(log.Level.ERROR, f"{name}: unexpected exception: {message}")
        raise cni(HOST_FAILED, f"py-routed guest: unexpected exception in {name}: {message}")


class Policy(exports.Policy):
    """The exported WIT interface `policy`: one method per CNI command."""

    def add(self, req):
        return guarded("add", add, req)

    def del_(self, req):
        return guarded("del", del_, req)

    def check(self, req):
        return guarded("check", check, req)

    def gc(self, config, valid):
        return guarded("gc", gc, valid)

    def status(self, config):
        return guarded("status", status, config)
