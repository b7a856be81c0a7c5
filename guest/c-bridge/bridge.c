// wasm-cni bridge policy, written in C.
//
// The same policy as the default Rust guest (guest/default/src/policy.rs with guest/kit):
// every node has a bridge (`cni0`) holding the gateway address, every pod gets a veth
// pair whose host end is plugged into the bridge, addresses come round-robin from the
// node's pod subnet, and traffic leaving the cluster is masqueraded. Same config keys,
// store keys, error codes and messages, so `wasm-cni simulate` prints byte-for-byte the
// Rust guest's session.
//
// How WIT looks from C (`wit-bindgen c wit/deps/plugin-0.1.0 --world cni-policy`
// writes cni_policy.h, cni_policy.c and cni_policy_component_type.o; build.sh runs it):
// - An imported function `links.create-veth` is `wasm_cni_plugin_links_create_veth`.
//   Strings are `cni_policy_string_t { uint8_t *ptr; size_t len; }` (not
//   NUL-terminated), passed by pointer. A `result<T, host-error>` import returns
//   `bool` (true: ok) and fills `*ret` or `*err`. An `option<T>` is a struct
//   `{ bool is_some; T val; }` as a result, a `T *` (NULL: none) as an argument.
// - An enum is an integer with a #define per case: WASM_CNI_PLUGIN_TYPES_NETNS_HOST.
// - `export policy;` is one C function per WIT function, named
//   `exports_wasm_cni_plugin_policy_add` etc., that returns true with `*ret` filled
//   (ok) or false with `*err` filled (err: a cni-error). What it returns must be
//   malloc'd: the generated post-return code frees it.
//
// Memory: each CNI call runs in a fresh instance of this component, and the instance
// is thrown away after the call. So this file allocates freely and never frees: the
// whole heap goes with the instance, like an arena per call.

#define _POSIX_C_SOURCE 200809L  // strndup

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cni_policy.h"

// ---------------------------------------------------------------- names and errors

typedef cni_policy_string_t str_t;
typedef cni_policy_list_string_t strs_t;
typedef wasm_cni_plugin_types_host_error_t host_error_t;
typedef wasm_cni_plugin_types_link_info_t link_info_t;
typedef wasm_cni_plugin_links_option_link_info_t maybe_link_t;
typedef exports_wasm_cni_plugin_policy_request_t request_t;
typedef exports_wasm_cni_plugin_policy_cni_error_t cni_error_t;

#define HOST WASM_CNI_PLUGIN_TYPES_NETNS_HOST
#define CONTAINER WASM_CNI_PLUGIN_TYPES_NETNS_CONTAINER

// CNI error codes: 7 is the spec's "invalid network config", 50 and 51 STATUS's "not
// available" and "not available, and pods may have limited connectivity"; 100 and up
// are ours.
enum {
    INVALID_CONFIG = 7,
    NOT_AVAILABLE = 50,
    LIMITED_CONNECTIVITY = 51,
    HOST_FAILED = 100,
    POOL_EXHAUSTED = 101,
    CHECK_FAILED = 102
};

// The failure of the current command. Every function below that can fail returns
// false after `fail(...)`; the export wrappers turn it into the WIT cni-error.
static uint32_t fail_code;
static char *fail_msg;

static bool fail(uint32_t code, char *msg) {
    fail_code = code;
    fail_msg = msg;
    return false;
}

// printf into a new string.
static char *fmt(const char *f, ...) {
    va_list a, b;
    va_start(a, f);
    va_copy(b, a);
    int n = vsnprintf(NULL, 0, f, a);
    char *s = malloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, f, b);
    va_end(a);
    va_end(b);
    return s;
}

// A C string as a WIT string (borrowed: the host copies what it needs).
static str_t S(const char *s) {
    return (str_t){(uint8_t *)s, strlen(s)};
}

// A WIT string as a new C string.
static char *C(str_t s) {
    char *c = malloc(s.len + 1);
    memcpy(c, s.ptr, s.len);
    c[s.len] = 0;
    return c;
}

static bool eq(const char *a, const char *b) {
    return a && b && strcmp(a, b) == 0;
}

// The host error of the last host call (every import gets `&he`).
static host_error_t he;

// One host call: if the runner refuses, fail with code 100 naming the step
// ("create veth: link ...: already exists"), as the Rust guest does.
#define STEP(what, call) \
    do { \
        if (!(call)) return fail(HOST_FAILED, fmt("%s: %s", what, C(he.message))); \
    } while (0)

static void info(const char *msg) {
    str_t m = S(msg);
    wasm_cni_plugin_log_write(WASM_CNI_PLUGIN_LOG_LEVEL_INFO, &m);
}

// A string quoted the way Rust's `{:?}` prints it, so that messages are the Rust
// guest's: "eth0" with \" \\ \n \t \r \0 and \u{..} escapes.
static char *q(const char *s) {
    char *out = malloc(strlen(s) * 6 + 3), *o = out;
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': o += sprintf(o, "\\\""); break;
        case '\\': o += sprintf(o, "\\\\"); break;
        case '\n': o += sprintf(o, "\\n"); break;
        case '\r': o += sprintf(o, "\\r"); break;
        case '\t': o += sprintf(o, "\\t"); break;
        default:
            if (*p < 0x20 || *p == 0x7f) o += sprintf(o, "\\u{%x}", *p);
            else *o++ = (char)*p;
        }
    }
    *o++ = '"';
    *o = 0;
    return out;
}

// ---------------------------------------------------------------- IPv4 arithmetic

typedef struct {
    uint32_t addr;
    unsigned prefix;
} net_t;

// "200.200.1.2" -> *ip. Like Rust's parser: four decimal parts 0..255, no leading
// zeros ("010" is refused: some tools read it as octal), nothing else.
static bool parse_ip(const char *s, uint32_t *ip) {
    uint32_t n = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0 && *s++ != '.') return false;
        int digits = 0;
        unsigned v = 0;
        if (s[0] == '0' && s[1] >= '0' && s[1] <= '9') return false;
        while (*s >= '0' && *s <= '9' && digits < 4) v = v * 10 + (unsigned)(*s++ - '0'), digits++;
        if (digits == 0 || digits > 3 || v > 255) return false;
        n = n << 8 | v;
    }
    if (*s) return false;
    *ip = n;
    return true;
}

static char *ip_text(uint32_t ip) {
    return fmt("%u.%u.%u.%u", ip >> 24, ip >> 16 & 255, ip >> 8 & 255, ip & 255);
}

static uint32_t net_mask(net_t n) {
    return n.prefix == 0 ? 0 : UINT32_MAX << (32 - n.prefix);
}
static uint32_t net_network(net_t n) {
    return n.addr & net_mask(n);
}
static uint32_t net_broadcast(net_t n) {
    return n.addr | ~net_mask(n);
}
static bool net_contains(net_t n, uint32_t ip) {
    return (ip & net_mask(n)) == net_network(n);
}
static bool net_covers(net_t outer, net_t inner) {
    return inner.prefix >= outer.prefix && net_contains(outer, net_network(inner));
}
static char *net_text(net_t n) {
    return fmt("%s/%u", ip_text(n.addr), n.prefix);
}

// Parse CIDR text into *n; with `strict`, host bits must be zero (a subnet, not an
// address). On error *why says what is wrong (for code 7).
static bool parse_net(const char *text, bool strict, net_t *n, char **why) {
    const char *slash = strchr(text, '/');
    if (!slash) {
        *why = fmt("%s is not in CIDR form (like 200.200.1.0/24)", q(text));
        return false;
    }
    char *a = strndup(text, (size_t)(slash - text));
    const char *p = slash + 1;
    if (!parse_ip(a, &n->addr)) {
        *why = fmt("%s: %s is not an IPv4 address", q(text), q(a));
        return false;
    }
    // Rust's u8 parse: an optional '+', then digits (leading zeros allowed)
    const char *d = *p == '+' ? p + 1 : p;
    unsigned v = 0;
    bool ok = *d != 0;
    for (; ok && *d; d++) {
        if (*d < '0' || *d > '9') ok = false;
        else if ((v = v * 10 + (unsigned)(*d - '0')) > 32) ok = false;
    }
    if (!ok) {
        *why = fmt("%s: prefix %s is not a number from 0 to 32", q(text), q(p));
        return false;
    }
    n->prefix = v;
    if (strict && net_network(*n) != n->addr) {
        *why = fmt("%s is not a subnet: host bits are set (did you mean %s/%u?)", q(text),
                   ip_text(net_network(*n)), n->prefix);
        return false;
    }
    return true;
}

// ---------------------------------------------------------------- JSON, just enough

// A JSON value. Numbers keep their text; objects keep keys in order.
typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype_t;
typedef struct json {
    jtype_t type;
    bool boolean;
    char *text;           // J_NUM: the literal; J_STR: the decoded string
    size_t len;           // J_ARR, J_OBJ: number of items
    struct json **items;  // J_ARR, J_OBJ
    char **keys;          // J_OBJ
} json_t;

typedef struct {
    const char *p;
    const char *error;
} reader_t;

static void ws(reader_t *r) {
    while (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r') r->p++;
}

static json_t *jvalue(reader_t *r, int depth);

static void put_utf8(char **o, unsigned c) {
    if (c < 0x80) *(*o)++ = (char)c;
    else if (c < 0x800) *(*o)++ = (char)(0xc0 | c >> 6), *(*o)++ = (char)(0x80 | (c & 63));
    else if (c < 0x10000)
        *(*o)++ = (char)(0xe0 | c >> 12), *(*o)++ = (char)(0x80 | (c >> 6 & 63)),
        *(*o)++ = (char)(0x80 | (c & 63));
    else
        *(*o)++ = (char)(0xf0 | c >> 18), *(*o)++ = (char)(0x80 | (c >> 12 & 63)),
        *(*o)++ = (char)(0x80 | (c >> 6 & 63)), *(*o)++ = (char)(0x80 | (c & 63));
}

static bool hex4(const char *p, unsigned *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return false;
        *v = *v * 16 + (unsigned)d;
    }
    return true;
}

static char *jstring(reader_t *r) {
    const char *p = r->p + 1;  // after the opening quote
    char *out = malloc(strlen(p) + 1), *o = out;
    for (;;) {
        unsigned char c = (unsigned char)*p++;
        if (c == '"') break;
        if (c < 0x20) { r->error = "control character or end of input in a string"; return NULL; }
        if (c != '\\') { *o++ = (char)c; continue; }
        unsigned u, lo;
        switch (*p++) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u':
            if (!hex4(p, &u)) { r->error = "bad \\u escape"; return NULL; }
            if (u == 0) { r->error = "\\u0000 in a string is not supported"; return NULL; }
            p += 4;
            if (u >= 0xd800 && u < 0xdc00 && p[0] == '\\' && p[1] == 'u' && hex4(p + 2, &lo) &&
                lo >= 0xdc00 && lo < 0xe000) {
                u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            } else if (u >= 0xd800 && u < 0xe000) {
                r->error = "lone surrogate in a \\u escape";
                return NULL;
            }
            put_utf8(&o, u);
            break;
        default: r->error = "bad escape in a string"; return NULL;
        }
    }
    *o = 0;
    r->p = p;
    return out;
}

static json_t *jnew(jtype_t t) {
    json_t *j = calloc(1, sizeof *j);
    j->type = t;
    return j;
}

static void jpush(json_t *j, char *key, json_t *item) {
    j->items = realloc(j->items, (j->len + 1) * sizeof *j->items);
    j->keys = realloc(j->keys, (j->len + 1) * sizeof *j->keys);
    j->items[j->len] = item;
    j->keys[j->len++] = key;
}

static json_t *jcontainer(reader_t *r, int depth, bool object) {
    json_t *j = jnew(object ? J_OBJ : J_ARR);
    char close = object ? '}' : ']';
    r->p++;
    ws(r);
    if (*r->p == close) { r->p++; return j; }
    for (;;) {
        char *key = NULL;
        ws(r);
        if (object) {
            if (*r->p != '"') { r->error = "expected a key"; return NULL; }
            if (!(key = jstring(r))) return NULL;
            ws(r);
            if (*r->p++ != ':') { r->error = "expected ':'"; return NULL; }
        }
        json_t *item = jvalue(r, depth + 1);
        if (!item) return NULL;
        jpush(j, key, item);
        ws(r);
        if (*r->p == ',') { r->p++; continue; }
        if (*r->p == close) { r->p++; return j; }
        r->error = object ? "expected ',' or '}'" : "expected ',' or ']'";
        return NULL;
    }
}

static json_t *jvalue(reader_t *r, int depth) {
    ws(r);
    if (depth > 64) { r->error = "nested too deeply"; return NULL; }
    const char *p = r->p;
    if (*p == '{' || *p == '[') return jcontainer(r, depth, *p == '{');
    if (*p == '"') {
        char *s = jstring(r);
        if (!s) return NULL;
        json_t *j = jnew(J_STR);
        j->text = s;
        return j;
    }
    if (!strncmp(p, "null", 4)) { r->p += 4; return jnew(J_NULL); }
    if (!strncmp(p, "true", 4) || !strncmp(p, "false", 5)) {
        json_t *j = jnew(J_BOOL);
        j->boolean = *p == 't';
        r->p += j->boolean ? 4 : 5;
        return j;
    }
    // a number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
    const char *s = p;
    if (*s == '-') s++;
    if (*s == '0') s++;
    else if (*s >= '1' && *s <= '9') while (*s >= '0' && *s <= '9') s++;
    else { r->error = "expected a value"; return NULL; }
    if (*s == '.') {
        if (!(*++s >= '0' && *s <= '9')) { r->error = "bad number"; return NULL; }
        while (*s >= '0' && *s <= '9') s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (!(*s >= '0' && *s <= '9')) { r->error = "bad number"; return NULL; }
        while (*s >= '0' && *s <= '9') s++;
    }
    json_t *j = jnew(J_NUM);
    j->text = strndup(p, (size_t)(s - p));
    r->p = s;
    return j;
}

// Parse a whole document; NULL with *error set when it is not JSON.
static json_t *json_parse(const char *text, const char **error) {
    reader_t r = {text, NULL};
    json_t *j = jvalue(&r, 0);
    if (j) {
        ws(&r);
        if (*r.p) { r.error = "trailing characters"; j = NULL; }
    }
    *error = r.error;
    return j;
}

// obj[key], or NULL when obj is not an object or has no such key (the last one wins,
// as in serde_json).
static json_t *jget(json_t *obj, const char *key) {
    json_t *found = NULL;
    if (obj && obj->type == J_OBJ)
        for (size_t i = 0; i < obj->len; i++)
            if (eq(obj->keys[i], key)) found = obj->items[i];
    return found;
}

// The string in j, or NULL.
static const char *jstr(json_t *j) {
    return j && j->type == J_STR ? j->text : NULL;
}

// A non-negative integer literal (no fraction, no exponent) up to `max`.
static bool juint(json_t *j, uint64_t max, uint64_t *out) {
    if (!j || j->type != J_NUM || strpbrk(j->text, "-.eE")) return false;
    uint64_t v = 0;
    for (const char *p = j->text; *p; p++) {
        if (v > (max - (uint64_t)(*p - '0')) / 10) return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return true;
}

// ---------------------------------------------------------------- config

// The settings this policy reads from the network config (the Rust guests' keys):
//   myHostNetwork  the node network: not masqueraded
//   myPodNetwork   the whole cluster's pod network: forwarded, not masqueraded
//   myPodSubnet    this node's slice of the pod network: where pod addresses come from
//   bridge         bridge name, default "cni0"
//   mtu            MTU for the bridge and veths, default: the kernel's
typedef struct {
    net_t host_network, pod_network, pod_subnet;
    char *bridge;
    bool has_mtu;
    uint32_t mtu;
    char *gateway;  // the subnet's first address: it lives on the bridge
} config_t;

static bool cidr_field(json_t *raw, const char *name, net_t *out) {
    json_t *v = jget(raw, name);
    char *why;
    if (!v || v->type == J_NULL)
        return fail(INVALID_CONFIG, fmt("missing field %s (a CIDR)", q(name)));
    if (v->type != J_STR)
        return fail(INVALID_CONFIG, fmt("%s: expected a string (a CIDR)", name));
    if (!parse_net(v->text, true, out, &why))
        return fail(INVALID_CONFIG, fmt("%s: %s", name, why));
    return true;
}

// Parse and check the config; anything wrong is error 7 with a message that says
// what to fix.
static bool parse_config(const char *text, config_t *c) {
    const char *error;
    json_t *raw = json_parse(text, &error);
    if (!raw) return fail(INVALID_CONFIG, fmt("network config: %s", error));
    if (raw->type != J_OBJ) return fail(INVALID_CONFIG, fmt("network config: not a JSON object"));
    if (!cidr_field(raw, "myHostNetwork", &c->host_network) ||
        !cidr_field(raw, "myPodNetwork", &c->pod_network) ||
        !cidr_field(raw, "myPodSubnet", &c->pod_subnet))
        return false;
    if (!net_covers(c->pod_network, c->pod_subnet))
        return fail(INVALID_CONFIG, fmt("myPodSubnet %s is not inside myPodNetwork %s",
                                        net_text(c->pod_subnet), net_text(c->pod_network)));
    // a /31 or /32 leaves no address for a pod once the gateway has one
    if (c->pod_subnet.prefix > 30)
        return fail(INVALID_CONFIG,
                    fmt("myPodSubnet %s is too small: it needs room for a gateway and pods "
                        "(/30 or larger)", net_text(c->pod_subnet)));
    json_t *b = jget(raw, "bridge");
    if (b && b->type != J_NULL && b->type != J_STR)
        return fail(INVALID_CONFIG, fmt("bridge: expected a string"));
    c->bridge = b && b->type == J_STR ? b->text : "cni0";
    // Linux interface names: 1 to 15 bytes, no '/' or whitespace; ':' would be an alias
    if (!*c->bridge || strlen(c->bridge) > 15 || strpbrk(c->bridge, "/ :"))
        return fail(INVALID_CONFIG, fmt("bridge %s is not a valid interface name", q(c->bridge)));
    json_t *m = jget(raw, "mtu");
    uint64_t mtu = 0;
    c->has_mtu = m && m->type != J_NULL;
    if (c->has_mtu && !juint(m, UINT32_MAX, &mtu))
        return fail(INVALID_CONFIG, fmt("mtu: expected a whole number"));
    if (c->has_mtu && (mtu < 576 || mtu > 65535))
        return fail(INVALID_CONFIG, fmt("mtu %u is out of range (576..65535)", (unsigned)mtu));
    c->mtu = (uint32_t)mtu;
    c->gateway = ip_text(net_network(c->pod_subnet) + 1);
    return true;
}

// What node setup depends on: stored under `node/setup` once the node is set up, so
// later ADDs only look at the bridge. Exactly the Rust guest's text (`mtu=None`,
// `mtu=Some(1500)`), so a node can switch between the guests.
static char *fingerprint(const config_t *c) {
    return fmt("v1 bridge=%s gw=%s/%u pods=%s hosts=%s mtu=%s", c->bridge, c->gateway,
               c->pod_subnet.prefix, net_text(c->pod_network), net_text(c->host_network),
               c->has_mtu ? fmt("Some(%u)", c->mtu) : "None");
}

// ---------------------------------------------------------------- the store

// The runner's store, as IPAM uses it. A store error fails the command with code 100
// ("address store: ..."). The value of get is NULL when the key is absent.
#define STORE(call) \
    do { \
        if (!(call)) return fail(HOST_FAILED, fmt("address store: %s", C(he.message))); \
    } while (0)

static bool store_get(const char *key, char **value) {
    str_t k = S(key);
    cni_policy_option_string_t v;
    STORE(wasm_cni_plugin_store_get(&k, &v, &he));
    *value = v.is_some ? C(v.val) : NULL;
    return true;
}

static bool store_put(const char *key, const char *value) {
    str_t k = S(key), v = S(value);
    STORE(wasm_cni_plugin_store_put(&k, &v, &he));
    return true;
}

static bool store_delete(const char *key) {
    str_t k = S(key);
    bool existed;
    STORE(wasm_cni_plugin_store_delete(&k, &existed, &he));
    return true;
}

static bool store_list(const char *prefix, strs_t *keys) {
    str_t p = S(prefix);
    STORE(wasm_cni_plugin_store_list(&p, keys, &he));
    return true;
}

// ---------------------------------------------------------------- IPAM

// Address management in the node's pod subnet, in the runner's store, with the Rust
// guests' keys:
//   ip/<address>                   -> "<container-id> <ifname>"  (who holds it)
//   attach/<container-id>/<ifname> -> "<address>"                (what it holds)
//   last                           -> the address handed out last
// The ip/ key is written first: an interrupted ADD leaves at worst an ip/ key whose
// owner a later DEL or GC finds by scanning.

// The address of (cid, ifname) into *ip: the one it holds, or the next free one after
// the last handed out (network+2 .. broadcast-1; network+1 is the gateway).
static bool allocate(net_t subnet, const char *cid, const char *ifname, uint32_t *ip) {
    char *attach = fmt("attach/%s/%s", cid, ifname), *held, *last_text;
    uint32_t v;
    if (!store_get(attach, &held)) return false;
    if (held && parse_ip(held, &v) && net_contains(subnet, v)) {
        *ip = v;
        return true;
    }
    uint32_t first = net_network(subnet) + 2, last = net_broadcast(subnet) - 1;
    uint32_t size = last - first + 1, start = first;
    if (!store_get("last", &last_text)) return false;
    if (last_text && parse_ip(last_text, &v) && v >= first && v < last) start = v + 1;
    for (uint32_t i = 0; i < size; i++) {
        uint32_t candidate = first + (start - first + i) % size;
        char *text = ip_text(candidate), *key = fmt("ip/%s", text), *owner;
        if (!store_get(key, &owner)) return false;
        if (owner) continue;
        if (!store_put(key, fmt("%s %s", cid, ifname)) || !store_put(attach, text) ||
            !store_put("last", text))
            return false;
        *ip = candidate;
        return true;
    }
    return fail(POOL_EXHAUSTED, fmt("no free address in %s: all %u pod addresses are in use",
                                    net_text(subnet), size));
}

// Release what (cid, ifname) holds; *freed is the address text, or NULL.
static bool release(const char *cid, const char *ifname, char **freed) {
    char *me = fmt("%s %s", cid, ifname), *attach = fmt("attach/%s/%s", cid, ifname);
    char *ip, *owner;
    uint32_t v;
    *freed = NULL;
    if (!store_get(attach, &ip)) return false;
    if (ip) {
        char *key = fmt("ip/%s", ip);
        if (!store_get(key, &owner)) return false;
        // only free the address if it is still ours (never someone else's reservation)
        if (eq(owner, me) && !store_delete(key)) return false;
        if (!store_delete(attach)) return false;
        *freed = parse_ip(ip, &v) ? ip : NULL;
        return true;
    }
    strs_t keys;
    if (!store_list("ip/", &keys)) return false;
    for (size_t i = 0; i < keys.len; i++) {
        char *key = C(keys.ptr[i]);
        if (!store_get(key, &owner)) return false;
        if (!eq(owner, me)) continue;
        if (!store_delete(key)) return false;
        *freed = parse_ip(key + 3, &v) ? key + 3 : NULL;
    }
    return true;
}

// Every attachment that holds something, from both key families: "cid\nifname"
// strings, sorted, without duplicates (a newline sorts before any printable
// character, so this is the Rust guest's (cid, ifname) order).
typedef struct {
    char **items;
    size_t len;
} holders_t;

static int by_text(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool holders(holders_t *h) {
    strs_t attach, ips;
    h->len = 0;
    if (!store_list("attach/", &attach)) return false;
    if (!store_list("ip/", &ips)) return false;
    h->items = malloc(sizeof(char *) * (attach.len + ips.len + 1));
    for (size_t i = 0; i < attach.len; i++) {
        char *rest = C(attach.ptr[i]) + strlen("attach/"), *slash = strchr(rest, '/');
        if (slash) *slash = '\n', h->items[h->len++] = rest;
    }
    for (size_t i = 0; i < ips.len; i++) {
        char *owner, *space;
        if (!store_get(C(ips.ptr[i]), &owner)) return false;
        if (owner && (space = strchr(owner, ' '))) *space = '\n', h->items[h->len++] = owner;
    }
    qsort(h->items, h->len, sizeof *h->items, by_text);
    size_t n = 0;
    for (size_t i = 0; i < h->len; i++)
        if (n == 0 || !eq(h->items[n - 1], h->items[i])) h->items[n++] = h->items[i];
    h->len = n;
    return true;
}

// ---------------------------------------------------------------- node setup

// A sysctl value that is "1", whitespace around it aside.
static bool is_one(const char *f) {
    while (*f == ' ' || *f == '\n' || *f == '\t' || *f == '\r') f++;
    return f[0] == '1' && strspn(f + 1, " \n\t\r") == strlen(f + 1);
}

// Set up the node once: the bridge with the gateway address, IPv4 forwarding, the
// firewall rules. Every step looks before it changes, so running it again is
// harmless, and the stored fingerprint lets later ADDs skip it.
static bool ensure_node(const config_t *c) {
    char *fp = fingerprint(c), *gw = fmt("%s/%u", c->gateway, c->pod_subnet.prefix);
    str_t bridge = S(c->bridge), setup = S("node/setup");
    maybe_link_t b;
    STEP("look up bridge", wasm_cni_plugin_links_get(HOST, &bridge, &b, &he));
    if (b.is_some) {
        cni_policy_option_string_t done;
        STEP("read node state", wasm_cni_plugin_store_get(&setup, &done, &he));
        if (b.val.up && done.is_some && eq(C(done.val), fp)) return true;
    }
    info(fmt("setting up node: %s", fp));
    if (!b.is_some) {
        link_info_t created;
        uint32_t mtu = c->mtu;
        STEP("create bridge", wasm_cni_plugin_links_create_bridge(&bridge, c->has_mtu ? &mtu : NULL, &created, &he));
    }
    // the gateway address on the bridge makes the node the pods' first hop
    strs_t have;
    str_t gw_s = S(gw);
    STEP("list bridge addresses", wasm_cni_plugin_addresses_list(HOST, &bridge, &have, &he));
    bool present = false;
    for (size_t i = 0; i < have.len; i++) present |= eq(C(have.ptr[i]), gw);
    if (!present) STEP("add gateway address", wasm_cni_plugin_addresses_add(HOST, &bridge, &gw_s, &he));
    STEP("bring bridge up", wasm_cni_plugin_links_set_up(HOST, &bridge, &he));
    // the node routes pod traffic to other nodes and to the outside
    str_t key = S("net.ipv4.ip_forward"), one = S("1"), fwd;
    STEP("read ip_forward", wasm_cni_plugin_sysctl_get(HOST, &key, &fwd, &he));
    if (!is_one(C(fwd))) STEP("enable ip_forward", wasm_cni_plugin_sysctl_set(HOST, &key, &one, &he));
    // pod traffic is forwarded; only what leaves the cluster is masqueraded
    str_t pods = S(net_text(c->pod_network)), subnet = S(net_text(c->pod_subnet));
    str_t except[2] = {pods, S(net_text(c->host_network))};
    strs_t except_list = {except, 2};
    STEP("allow forwarding", wasm_cni_plugin_firewall_allow_forward(&pods, &he));
    STEP("masquerade", wasm_cni_plugin_firewall_masquerade(&subnet, &except_list, &he));
    str_t fp_s = S(fp);
    STEP("record node state", wasm_cni_plugin_store_put(&setup, &fp_s, &he));
    return true;
}

// ---------------------------------------------------------------- ADD

typedef exports_wasm_cni_plugin_policy_add_result_t add_result_t;

// A new WIT string holding a copy of s (results must be malloc'd: the runner's
// post-return frees them).
static str_t dup(const char *s) {
    str_t out;
    cni_policy_string_dup(&out, s);
    return out;
}

static bool add(const request_t *req, add_result_t *ret) {
    config_t c;
    if (!parse_config(C(req->config), &c) || !ensure_node(&c)) return false;
    char *cid = C(req->container_id), *ifname = C(req->ifname), *host = C(req->host_link);
    uint32_t ip;
    if (!allocate(c.pod_subnet, cid, ifname, &ip)) return false;

    // The runner decides the host end's name (request.host-link): it is the only
    // prefixed host link this call may create, so one pod's call cannot touch another's.
    str_t host_s = S(host), if_s = S(ifname), bridge = S(c.bridge);
    maybe_link_t found;
    STEP("look up host veth", wasm_cni_plugin_links_get(HOST, &host_s, &found, &he));
    // a host end left by an earlier, interrupted ADD of this attachment is stale
    if (found.is_some) STEP("remove stale host veth", wasm_cni_plugin_links_delete(HOST, &host_s, &he));
    STEP("look up container interface", wasm_cni_plugin_links_get(CONTAINER, &if_s, &found, &he));
    if (found.is_some)
        return fail(HOST_FAILED, fmt("interface %s already exists in the container", q(ifname)));
    wasm_cni_plugin_links_veth_pair_t pair;
    STEP("create veth", wasm_cni_plugin_links_create_veth(&host_s, &if_s, c.has_mtu ? &c.mtu : NULL,
                                                           &pair, &he));
    STEP("attach veth to bridge", wasm_cni_plugin_links_set_master(&host_s, &bridge, &he));
    STEP("bring host veth up", wasm_cni_plugin_links_set_up(HOST, &host_s, &he));
    char *cidr = fmt("%s/%u", ip_text(ip), c.pod_subnet.prefix);
    str_t cidr_s = S(cidr);
    STEP("add pod address", wasm_cni_plugin_addresses_add(CONTAINER, &if_s, &cidr_s, &he));
    STEP("bring pod interface up", wasm_cni_plugin_links_set_up(CONTAINER, &if_s, &he));
    wasm_cni_plugin_routes_route_t def = {
        .destination = S("0.0.0.0/0"),
        .gateway = {.is_some = true, .val = S(c.gateway)},
        .link = {.is_some = true, .val = if_s},
    };
    STEP("add default route", wasm_cni_plugin_routes_add(CONTAINER, &def, &he));
    info(fmt("pod %s got %s on %s", cid, cidr, host));

    // The WIT record add-result: the host end, the pod end (index 1) with the address,
    // the default route. The runner turns it into the CNI result JSON.
    exports_wasm_cni_plugin_policy_result_interface_t *ifs = malloc(2 * sizeof *ifs);
    ifs[0] = (exports_wasm_cni_plugin_policy_result_interface_t){dup(host), dup(C(pair.host.mac)), false};
    ifs[1] = (exports_wasm_cni_plugin_policy_result_interface_t){dup(ifname), dup(C(pair.container.mac)), true};
    exports_wasm_cni_plugin_policy_ip_config_t *ips = malloc(sizeof *ips);
    ips[0] = (exports_wasm_cni_plugin_policy_ip_config_t){
        .address = dup(cidr),
        .gateway = {.is_some = true, .val = dup(c.gateway)},
        .interface = {.is_some = true, .val = 1},
    };
    exports_wasm_cni_plugin_policy_result_route_t *routes = malloc(sizeof *routes);
    routes[0] = (exports_wasm_cni_plugin_policy_result_route_t){
        .destination = dup("0.0.0.0/0"),
        .gateway = {.is_some = true, .val = dup(c.gateway)},
    };
    *ret = (add_result_t){
        .interfaces = {ifs, 2},
        .ips = {ips, 1},
        .routes = {routes, 1},
        .dns = {.is_some = false},
    };
    return true;
}

// ---------------------------------------------------------------- DEL

// Remove the host end of an attachment's veth; the kernel removes the pod end with
// it. "Not found" is success: DEL must work when things are already gone.
static bool remove_host_veth(const char *name) {
    str_t n = S(name);
    if (wasm_cni_plugin_links_delete(HOST, &n, &he) || he.kind == WASM_CNI_PLUGIN_TYPES_ERROR_KIND_NOT_FOUND)
        return true;
    return fail(HOST_FAILED, fmt("remove host veth: %s", C(he.message)));
}

static bool del(const request_t *req) {
    // DEL reads nothing from the config: names come from the request and state from
    // the store, so a DEL still cleans up after the config was broken or changed.
    char *cid = C(req->container_id), *freed;
    if (!remove_host_veth(C(req->host_link)) || !release(cid, C(req->ifname), &freed)) return false;
    if (freed) info(fmt("pod %s released %s", cid, freed));
    return true;
}

// ---------------------------------------------------------------- CHECK

// ASCII letters compare without regard to case (MAC addresses).
static bool eq_ignore_case(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        char x = *a >= 'A' && *a <= 'Z' ? (char)(*a + 32) : *a;
        char y = *b >= 'A' && *b <= 'Z' ? (char)(*b + 32) : *b;
        if (x != y) return false;
    }
    return *a == *b;
}

// CHECK: is what ADD reported (the config's prevResult) still in place?
static bool check(const request_t *req) {
    config_t c;
    char *text = C(req->config), *ifname = C(req->ifname), *host = C(req->host_link);
    const char *error;
    if (!parse_config(text, &c)) return false;
    json_t *prev = jget(json_parse(text, &error), "prevResult");
    if (!prev || prev->type != J_OBJ)
        return fail(INVALID_CONFIG, fmt("CHECK needs prevResult in the network config"));
    json_t *ifaces = jget(prev, "interfaces"), *ips = jget(prev, "ips"), *routes = jget(prev, "routes");
    size_t n_ifaces = ifaces && ifaces->type == J_ARR ? ifaces->len : 0;

    // The pod's interface: there, up, with the MAC ADD reported (a different MAC means
    // it was recreated). The pod end is the interface with our name that has a
    // `sandbox` path.
    const char *want_mac = NULL;
    for (size_t i = 0; i < n_ifaces; i++) {
        json_t *f = ifaces->items[i];
        if (eq(jstr(jget(f, "name")), ifname) && jget(f, "sandbox")) {
            want_mac = jstr(jget(f, "mac"));
            break;
        }
    }
    str_t if_s = S(ifname), host_s = S(host), bridge = S(c.bridge);
    maybe_link_t pod;
    STEP("look up container interface", wasm_cni_plugin_links_get(CONTAINER, &if_s, &pod, &he));
    if (!pod.is_some) return fail(CHECK_FAILED, fmt("interface %s is missing in the container", q(ifname)));
    if (!pod.val.up) return fail(CHECK_FAILED, fmt("interface %s in the container is down", q(ifname)));
    char *mac = C(pod.val.mac);
    if (want_mac && !eq_ignore_case(want_mac, mac))
        return fail(CHECK_FAILED, fmt("interface %s has MAC %s instead of %s", q(ifname), mac, want_mac));

    // Every address reported on the pod's interface is still on it (an address
    // without an interface index is taken to be the pod's).
    strs_t have;
    STEP("list pod addresses", wasm_cni_plugin_addresses_list(CONTAINER, &if_s, &have, &he));
    wasm_cni_plugin_routes_list_route_t table;
    STEP("list pod routes", wasm_cni_plugin_routes_list(CONTAINER, NULL, &table, &he));
    for (size_t i = 0; ips && ips->type == J_ARR && i < ips->len; i++) {
        uint64_t index;
        const char *address = jstr(jget(ips->items[i], "address"));
        bool on_pod = !juint(jget(ips->items[i], "interface"), UINT64_MAX, &index) ||
                      (index < n_ifaces && eq(jstr(jget(ifaces->items[index], "name")), ifname));
        if (!on_pod || !address) continue;
        bool found = false;
        for (size_t k = 0; k < have.len; k++) found |= eq(C(have.ptr[k]), address);
        if (!found) return fail(CHECK_FAILED, fmt("address %s is missing on %s", address, q(ifname)));
    }
    // Every reported route is still in the container's table (the CNI result JSON
    // names them `dst` and `gw`).
    for (size_t i = 0; routes && routes->type == J_ARR && i < routes->len; i++) {
        const char *dst = jstr(jget(routes->items[i], "dst")), *gw = jstr(jget(routes->items[i], "gw"));
        if (!dst) continue;
        bool found = false;
        for (size_t k = 0; k < table.len; k++) {
            wasm_cni_plugin_routes_route_t *t = &table.ptr[k];
            found |= eq(C(t->destination), dst) && (!gw || (t->gateway.is_some && eq(C(t->gateway.val), gw)));
        }
        if (!found) return fail(CHECK_FAILED, fmt("route to %s is missing in the container", dst));
    }

    // The node side: the host end of the veth and the bridge.
    maybe_link_t l;
    STEP("look up host veth", wasm_cni_plugin_links_get(HOST, &host_s, &l, &he));
    if (!l.is_some) return fail(CHECK_FAILED, fmt("host veth %s is missing", host));
    STEP("look up bridge", wasm_cni_plugin_links_get(HOST, &bridge, &l, &he));
    if (!l.is_some) return fail(CHECK_FAILED, fmt("bridge %s is missing", c.bridge));
    return true;
}

// ---------------------------------------------------------------- GC and STATUS

// GC: release the host veth and the address of every attachment the store knows that
// is not in `valid`. links.attachment-link gives any attachment's host link name.
static bool gc(const exports_wasm_cni_plugin_policy_list_attachment_t *valid) {
    holders_t h;
    if (!holders(&h)) return false;
    for (size_t i = 0; i < h.len; i++) {
        char *cid = h.items[i], *nl = strchr(cid, '\n'), *ifname = nl + 1, *freed;
        *nl = 0;
        bool keep = false;
        for (size_t k = 0; k < valid->len; k++)
            keep |= eq(C(valid->ptr[k].container_id), cid) && eq(C(valid->ptr[k].ifname), ifname);
        if (keep) continue;
        str_t cid_s = S(cid), if_s = S(ifname), link;
        wasm_cni_plugin_links_attachment_link(&cid_s, &if_s, &link);
        if (!remove_host_veth(C(link)) || !release(cid, ifname, &freed)) return false;
        info(fmt("gc: released %s/%s (%s)", cid, ifname, freed ? fmt("Some(%s)", freed) : "None"));
    }
    return true;
}

// STATUS: 7 for a bad config; 50 when the store does not answer (no ADD can reserve an
// address); when pods hold addresses (ip/ keys), 51 if what they depend on is broken:
// the bridge gone or down, or ip_forward off. Without pods the node is ready whatever
// its setup: the next ADD sets it up again.
static bool status(const char *config) {
    config_t c;
    str_t ip = S("ip/");
    strs_t keys;
    if (!parse_config(config, &c)) return false;
    if (!wasm_cni_plugin_store_list(&ip, &keys, &he))
        return fail(NOT_AVAILABLE, fmt("store unusable: %s", C(he.message)));
    if (keys.len == 0) return true;
    str_t bridge = S(c.bridge);
    maybe_link_t b;
    const char *problem = NULL;
    STEP("look up bridge", wasm_cni_plugin_links_get(HOST, &bridge, &b, &he));
    if (!b.is_some) {
        problem = fmt("bridge %s is missing", c.bridge);
    } else if (!b.val.up) {
        problem = fmt("bridge %s is down", c.bridge);
    } else {
        str_t key = S("net.ipv4.ip_forward"), fwd;
        STEP("read ip_forward", wasm_cni_plugin_sysctl_get(HOST, &key, &fwd, &he));
        if (!is_one(C(fwd))) problem = "net.ipv4.ip_forward is off";
    }
    if (!problem) return true;
    return fail(LIMITED_CONNECTIVITY,
                fmt("%s: the %zu pod address(es) in use may have limited connectivity", problem, keys.len));
}

// ---------------------------------------------------------------- exports

// false from a command: the failure it recorded, as the WIT cni-error.
static bool failed(cni_error_t *err) {
    err->code = fail_code;
    err->message = dup(fail_msg ? fail_msg : "c-bridge guest: failed without a message");
    err->details = dup("");
    return false;
}

bool exports_wasm_cni_plugin_policy_add(request_t *req, add_result_t *ret, cni_error_t *err) {
    return add(req, ret) || failed(err);
}

bool exports_wasm_cni_plugin_policy_del(request_t *req, cni_error_t *err) {
    return del(req) || failed(err);
}

bool exports_wasm_cni_plugin_policy_check(request_t *req, cni_error_t *err) {
    return check(req) || failed(err);
}

bool exports_wasm_cni_plugin_policy_gc(str_t *config, exports_wasm_cni_plugin_policy_list_attachment_t *valid,
                                       cni_error_t *err) {
    (void)config;
    return gc(valid) || failed(err);
}

bool exports_wasm_cni_plugin_policy_status(str_t *config, cni_error_t *err) {
    return status(C(*config)) || failed(err);
}
