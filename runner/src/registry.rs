//! `wasm-cni guest push` and `guest pull`: guests in an OCI registry, in the CNCF Wasm
//! OCI artifact layout that wkg (wasm-pkg-tools) and the `oci-wasm` crate write: an OCI
//! image manifest whose config is `application/vnd.wasm.config.v0+json` and whose one
//! layer is the component itself (`application/wasm`), so the layer digest is the
//! sha256 of the component's bytes.
//!
//! Only these two subcommands use this module: a CNI call never reaches the network
//! (a pod must not wait on a registry), and nothing here is set up before them.
//!
//! The transport is `oci-client` (reqwest, rustls with ring). On top of it: the checks
//! of `guest check` on both sides (a registry is not trusted to hold a guest), the
//! digests verified here as well as by the client (the manifest against a pinned
//! reference, the layer against the manifest), the media types, a size cap, an atomic
//! write, and errors that name the reference and what went wrong.

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// The manifest, config and layer media types of a Wasm OCI artifact.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The Docker manifest type a registry may answer with for the same content.
const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// What a pull accepts; an index is asked for only to refuse it by name.
const ACCEPT: [&str; 4] = [
    MANIFEST_MEDIA_TYPE,
    DOCKER_MANIFEST_MEDIA_TYPE,
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// The largest component a pull accepts (a componentize-py guest is about 40 MiB).
pub const MAX_COMPONENT: u64 = 256 << 20;
/// The largest manifest (ours is well under 1 KiB).
const MAX_MANIFEST: usize = 1 << 20;

/// What can go wrong, each naming the reference (or the file) it is about.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{reference}: not found in the registry: {detail}")]
    NotFound { reference: String, detail: String },
    #[error("{reference}: cannot reach the registry {registry}: {reason}")]
    Unreachable {
        reference: String,
        registry: String,
        reason: String,
    },
    #[error("{reference}: the registry {registry} refused {who} (401 Unauthorized)")]
    Unauthorized {
        reference: String,
        registry: String,
        who: &'static str,
    },
    #[error("{reference}: digest mismatch on the {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        reference: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{reference}: not a Wasm component artifact: {reason}")]
    MediaType { reference: String, reason: String },
    /// The checks of `guest check` refused the component.
    #[error("{what}: refused: {reason}")]
    Refused { what: String, reason: String },
    #[error("{reference}: {reason}")]
    Registry { reference: String, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A bad option value: the CA file, the registry config, the output path.
    #[error("{0}")]
    Setup(String),
}

fn io(what: impl fmt::Display, source: std::io::Error) -> Error {
    Error::Io {
        what: what.to_string(),
        source,
    }
}

/// A registry reference as the user wrote it (`host[:port]/repo[:tag][@sha256:...]`).
#[derive(Clone, Debug)]
pub struct Ref {
    text: String,
    inner: Reference,
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ref {
    /// The digest the reference pins, if any.
    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }
    fn registry(&self) -> &str {
        self.inner.registry()
    }
}

/// Parse a reference for `guest pull` (a tag or a digest); for clap.
pub fn parse_reference(s: &str) -> Result<Ref, String> {
    let text = s.strip_prefix("oci://").unwrap_or(s);
    let inner: Reference = text
        .parse()
        .map_err(|e| format!("{s:?} is not a registry reference ({e}); expected host[:port]/repository[:tag][@sha256:<hex>]"))?;
    if let Some(d) = inner.digest() {
        if !is_sha256(d) {
            return Err(format!(
                "{s:?}: only sha256 digests are supported (sha256:<64 hex digits>), not {d:?}"
            ));
        }
    }
    Ok(Ref {
        text: text.to_string(),
        inner,
    })
}

/// Parse a reference for `guest push`: a tag, not a digest (the digest is the outcome).
pub fn parse_push_reference(s: &str) -> Result<Ref, String> {
    let r = parse_reference(s)?;
    if r.digest().is_some() {
        return Err(format!(
            "{s:?}: push to a tag (host/repository:tag); the digest is what push prints"
        ));
    }
    Ok(r)
}

/// A lowercase `sha256:<64 hex>` (OCI digests are lowercase).
fn is_sha256(d: &str) -> bool {
    crate::cni::config::parse_digest(d).as_deref() == Some(d)
}

/// How to reach the registry and who to be there.
#[derive(Debug, Default)]
pub struct Options {
    /// Plain HTTP (only when asked: a local registry).
    pub insecure: bool,
    /// A PEM file of CA certificates to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    /// A docker-style config.json (`auths.<host>.auth`); default `$DOCKER_CONFIG/config.json`
    /// or `~/.docker/config.json`, if it exists.
    pub registry_config: Option<PathBuf>,
    /// Basic auth: the user name, with the password read from stdin.
    pub username: Option<String>,
    pub password_stdin: bool,
}

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(Deserialize, Default)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// `https://host:port/v1/` or `host:port` -> `host:port`.
fn auth_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

fn default_registry_config() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The credentials for `reference`: the flags, else the registry config's entry for its
/// host, else anonymous.
fn credentials(reference: &Ref, o: &Options) -> Result<RegistryAuth, Error> {
    if let Some(user) = &o.username {
        let mut password = String::new();
        if o.password_stdin {
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut password)
                .map_err(|e| io("reading the password from stdin", e))?;
        }
        let password = password.trim_end_matches(['\n', '\r']).to_string();
        if password.is_empty() {
            return Err(Error::Setup(
                "--password-stdin: no password on stdin".to_string(),
            ));
        }
        return Ok(RegistryAuth::Basic(user.clone(), password));
    }
    let (path, explicit) = match &o.registry_config {
        Some(p) => (p.clone(), true),
        None => match default_registry_config() {
            Some(p) => (p, false),
            None => return Ok(RegistryAuth::Anonymous),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(RegistryAuth::Anonymous)
        }
        Err(e) => return Err(io(format!("registry config {}", path.display()), e)),
    };
    let config: DockerConfig = serde_json::from_str(&text).map_err(|e| {
        Error::Setup(format!(
            "registry config {}: not a docker-style config.json: {e}",
            path.display()
        ))
    })?;
    let registry = reference.registry();
    let wanted = [registry, reference.inner.resolve_registry()];
    let entry = config.auths.iter().find(|(k, _)| {
        let h = auth_host(k);
        wanted.contains(&h) || (registry == "docker.io" && h == "index.docker.io")
    });
    let Some((key, a)) = entry else {
        return Ok(RegistryAuth::Anonymous);
    };
    let bad = |why: &str| {
        Error::Setup(format!(
            "registry config {}: auths.{key}: {why}",
            path.display()
        ))
    };
    if let Some(token) = a.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(RegistryAuth::Bearer(token.clone()));
    }
    if let Some(b64) = a.auth.as_ref().filter(|t| !t.is_empty()) {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| bad(&format!("auth is not base64: {e}")))?;
        let text = String::from_utf8(raw).map_err(|_| bad("auth is not UTF-8"))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| bad("auth is not base64 of user:password"))?;
        return Ok(RegistryAuth::Basic(u.to_string(), p.to_string()));
    }
    match (&a.username, &a.password) {
        (Some(u), Some(p)) => Ok(RegistryAuth::Basic(u.clone(), p.clone())),
        _ => Err(bad("no auth, username/password or identitytoken")),
    }
}

fn client(o: &Options) -> Result<Client, Error> {
    // rustls without a default provider: ring, chosen here (an Err means one is set)
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = ClientConfig {
        protocol: if o.insecure {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        user_agent: concat!("wasm-cni/", env!("CARGO_PKG_VERSION")),
        platform_resolver: None,
        ..ClientConfig::default()
    };
    if let Some(path) = &o.ca_file {
        let data = std::fs::read(path).map_err(|e| io(format!("CA file {}", path.display()), e))?;
        if !data
            .windows(27)
            .any(|w| w == b"-----BEGIN CERTIFICATE-----")
        {
            return Err(Error::Setup(format!(
                "CA file {}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)",
                path.display()
            )));
        }
        config.extra_root_certificates.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        });
    }
    Client::try_from(config).map_err(|e| {
        Error::Setup(format!(
            "cannot set up the registry client{}: {}",
            o.ca_file
                .as_ref()
                .map(|p| format!(" with CA file {}", p.display()))
                .unwrap_or_default(),
            chain(&e)
        ))
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| io("starting the I/O runtime", e))
}

/// An error and its sources, deduplicated: reqwest wraps hyper wraps io, each adding
/// little ("error sending request", "client error (Connect)", "Connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// The registry client's error, in terms of the reference.
fn classify(r: &Ref, auth: &RegistryAuth, e: OciDistributionError) -> Error {
    let reference = r.to_string();
    let registry = r.registry().to_string();
    let unauthorized = || Error::Unauthorized {
        reference: reference.clone(),
        registry: registry.clone(),
        who: match auth {
            RegistryAuth::Anonymous => {
                "an anonymous request: give credentials (--username with --password-stdin, \
                 or --registry-config)"
            }
            _ => "the credentials given",
        },
    };
    match e {
        OciDistributionError::RequestError(ref re) => {
            let mut reason = chain(re);
            if reason.contains("certificate") || reason.contains("Certificate") {
                reason.push_str(" (a registry with its own CA: --ca-file PEM)");
            } else if reason.contains("corrupt message") || reason.contains("InvalidContentType") {
                reason.push_str(" (a plain-HTTP registry: --insecure)");
            }
            if re.is_connect() || re.is_timeout() {
                Error::Unreachable {
                    reference,
                    registry,
                    reason,
                }
            } else {
                Error::Registry { reference, reason }
            }
        }
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => unauthorized(),
        OciDistributionError::ServerError { code: 401, .. }
        | OciDistributionError::ServerError { code: 403, .. } => unauthorized(),
        OciDistributionError::ServerError {
            code: 404, message, ..
        } => Error::NotFound {
            reference,
            detail: format!("HTTP 404 {}", message.trim()),
        },
        OciDistributionError::ServerError {
            code: 400, message, ..
        } if message.contains("HTTPS") => Error::Registry {
            reference,
            reason: format!(
                "the registry speaks HTTPS (drop --insecure): HTTP 400 {}",
                message.trim()
            ),
        },
        OciDistributionError::ServerError { code, message, .. } => Error::Registry {
            reference,
            reason: format!("HTTP {code} {}", message.trim()),
        },
        OciDistributionError::RegistryError { envelope, .. } => {
            let code = envelope.errors.first().map(|e| &e.code);
            match code {
                Some(
                    OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::NotFound
                    | OciErrorCode::BlobUnknown,
                ) => Error::NotFound {
                    reference,
                    detail: envelope
                        .errors
                        .iter()
                        .map(|e| match e.message.as_str() {
                            "" => format!("{:?}", e.code),
                            m => m.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                },
                Some(OciErrorCode::Unauthorized | OciErrorCode::Denied) => unauthorized(),
                _ => Error::Registry {
                    reference,
                    reason: format!("the registry answered: {envelope}"),
                },
            }
        }
        OciDistributionError::DigestError(DigestError::VerificationError { expected, actual }) => {
            Error::DigestMismatch {
                reference,
                what: "content",
                expected,
                actual,
            }
        }
        OciDistributionError::IoError(ref ie) => match digest_mismatch(ie) {
            Some((expected, actual)) => Error::DigestMismatch {
                reference,
                what: "layer",
                expected,
                actual,
            },
            None => Error::Registry {
                reference,
                reason: chain(ie),
            },
        },
        other => Error::Registry {
            reference,
            reason: chain(&other),
        },
    }
}

/// The digest error the client's verifying stream wraps in an io::Error.
fn digest_mismatch(e: &std::io::Error) -> Option<(String, String)> {
    match e.get_ref()?.downcast_ref::<DigestError>()? {
        DigestError::VerificationError { expected, actual } => {
            Some((expected.clone(), actual.clone()))
        }
        _ => None,
    }
}

/// The top-level imports and exports of a component (nested modules and components
/// skipped), for the artifact's config as oci-wasm writes it.
fn interface_names(bytes: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    use wasmparser::{Parser, Payload};
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| e.to_string())? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) if depth == 0 => break,
            Payload::End(_) => depth -= 1,
            Payload::ComponentImportSection(s) if depth == 0 => {
                for i in s {
                    imports.push(i.map_err(|e| e.to_string())?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(s) if depth == 0 => {
                for x in s {
                    exports.push(x.map_err(|e| e.to_string())?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

/// The artifact's config (`application/vnd.wasm.config.v0+json`), the fields oci-wasm's
/// `WasmConfig` has. `created` is SOURCE_DATE_EPOCH when set (a reproducible push: the
/// same file gives the same manifest digest), else now.
fn wasm_config(bytes: &[u8], layer_digest: &str) -> Result<Vec<u8>, String> {
    let (imports, exports) = interface_names(bytes)?;
    // the world the guest implements (its policy export's version)
    let target =
        crate::wasm::World::of_exports(exports.iter().map(String::as_str)).map(|w| w.name());
    let when = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or_else(std::time::SystemTime::now, |s| {
            std::time::UNIX_EPOCH + Duration::from_secs(s)
        });
    let config = serde_json::json!({
        "created": humantime::format_rfc3339_seconds(when).to_string(),
        "author": null,
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
        "component": {
            "exports": exports,
            "imports": imports,
            "target": target,
        },
    });
    serde_json::to_vec(&config).map_err(|e| e.to_string())
}

/// The reason `guest check` gave, without the path it was given (a temp file on pull).
fn check_reason(e: crate::error::Error) -> String {
    match e {
        crate::error::Error::Guest { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// Push `file` to `reference` after the checks of `guest check`. Returns
/// `REF@sha256:<manifest digest>`.
pub fn push(file: &Path, reference: &Ref, o: &Options) -> Result<String, Error> {
    let bytes = std::fs::read(file).map_err(|e| io(file.display(), e))?;
    crate::wasm::check::check(file).map_err(|e| Error::Refused {
        what: file.display().to_string(),
        reason: check_reason(e),
    })?;
    // what was checked is what goes out
    if std::fs::read(file).map_err(|e| io(file.display(), e))? != bytes {
        return Err(Error::Setup(format!(
            "{}: changed while it was checked; push again",
            file.display()
        )));
    }
    let layer_digest = crate::wasm::engine::digest(&bytes);
    let config = wasm_config(&bytes, &layer_digest).map_err(|reason| Error::Refused {
        what: file.display().to_string(),
        reason,
    })?;
    let config_digest = crate::wasm::engine::digest(&config);
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.to_string()),
        config: OciDescriptor {
            media_type: CONFIG_MEDIA_TYPE.to_string(),
            digest: config_digest.clone(),
            size: config.len() as i64,
            ..OciDescriptor::default()
        },
        layers: vec![OciDescriptor {
            media_type: LAYER_MEDIA_TYPE.to_string(),
            digest: layer_digest.clone(),
            size: bytes.len() as i64,
            ..OciDescriptor::default()
        }],
        ..OciImageManifest::default()
    };
    let body = serde_json::to_vec(&manifest).map_err(|e| Error::Setup(e.to_string()))?;
    let manifest_digest = crate::wasm::engine::digest(&body);

    let auth = credentials(reference, o)?;
    let client = client(o)?;
    let r = &reference.inner;
    let fail = |e| classify(reference, &auth, e);
    runtime()?.block_on(async {
        client
            .auth(r, &auth, RegistryOperation::Push)
            .await
            .map_err(fail)?;
        client
            .push_blob(r, bytes, &layer_digest)
            .await
            .map_err(fail)?;
        client
            .push_blob(r, config, &config_digest)
            .await
            .map_err(fail)?;
        client
            .push_manifest_raw(r, body, http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE))
            .await
            .map_err(fail)?;
        Ok::<(), Error>(())
    })?;
    Ok(format!("{reference}@{manifest_digest}"))
}

/// What a pull wrote.
#[derive(Debug)]
pub struct Pulled {
    /// `sha256:<hex>` of the component's bytes (the layer digest): what a config pins.
    pub digest: String,
    /// The manifest's digest (the `@sha256:` a reference can pin).
    pub manifest_digest: String,
    pub size: u64,
}

/// The one layer of a Wasm component artifact, or why this manifest is not one.
fn wasm_layer(reference: &Ref, body: &[u8]) -> Result<OciDescriptor, Error> {
    let bad = |reason: String| Error::MediaType {
        reference: reference.to_string(),
        reason,
    };
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Manifest {
        media_type: Option<String>,
        config: Option<OciDescriptor>,
        layers: Option<Vec<OciDescriptor>>,
        manifests: Option<serde_json::Value>,
    }
    let m: Manifest = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the manifest is not valid JSON: {e}")))?;
    if m.manifests.is_some() {
        return Err(bad(format!(
            "an image index ({}), not the manifest of one component",
            m.media_type.as_deref().unwrap_or("no mediaType")
        )));
    }
    if let Some(mt) = m.media_type.as_deref() {
        if mt != MANIFEST_MEDIA_TYPE && mt != DOCKER_MANIFEST_MEDIA_TYPE {
            return Err(bad(format!("manifest media type {mt}")));
        }
    }
    let config = m
        .config
        .ok_or_else(|| bad("the manifest has no config".into()))?;
    if config.media_type != CONFIG_MEDIA_TYPE {
        return Err(bad(format!(
            "config media type {} (a Wasm artifact's is {CONFIG_MEDIA_TYPE})",
            config.media_type
        )));
    }
    let mut layers = m.layers.unwrap_or_default();
    if layers.len() != 1 {
        return Err(bad(format!(
            "{} layers (a Wasm component artifact has exactly one)",
            layers.len()
        )));
    }
    let layer = layers.remove(0);
    if layer.media_type != LAYER_MEDIA_TYPE {
        return Err(bad(format!(
            "layer media type {} (a component's is {LAYER_MEDIA_TYPE})",
            layer.media_type
        )));
    }
    if !is_sha256(&layer.digest) {
        return Err(bad(format!(
            "layer digest {:?} is not sha256:<hex>",
            layer.digest
        )));
    }
    if layer.size < 0 || layer.size as u64 > MAX_COMPONENT {
        return Err(bad(format!(
            "layer of {} bytes (at most {MAX_COMPONENT})",
            layer.size
        )));
    }
    Ok(layer)
}

/// Removes a temp file unless it was renamed into place.
struct TempFile(Option<PathBuf>);
impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Pull `reference` into `out`: digests verified, the checks of `guest check` passed,
/// written atomically (a temp file in `out`'s directory, renamed over it). Nothing is
/// written when anything fails.
pub fn pull(reference: &Ref, out: &Path, o: &Options) -> Result<Pulled, Error> {
    let name = out
        .file_name()
        .ok_or_else(|| Error::Setup(format!("-o {}: not a file name", out.display())))?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::Setup(format!(
            "-o {}: directory {} does not exist",
            out.display(),
            dir.display()
        )));
    }
    let auth = credentials(reference, o)?;
    let client = client(o)?;
    let r = &reference.inner;
    let fail = |e| classify(reference, &auth, e);
    let mismatch = |what, expected: &str, actual: String| Error::DigestMismatch {
        reference: reference.to_string(),
        what,
        expected: expected.to_string(),
        actual,
    };
    let (manifest_digest, layer, bytes) = runtime()?.block_on(async {
        let (body, _) =
            client
                .pull_manifest_raw(r, &auth, &ACCEPT)
                .await
                .map_err(|e| match fail(e) {
                    // the client checks the manifest against the pin and the registry's header
                    Error::DigestMismatch {
                        reference,
                        expected,
                        actual,
                        ..
                    } => Error::DigestMismatch {
                        reference,
                        what: "manifest",
                        expected,
                        actual,
                    },
                    other => other,
                })?;
        if body.len() > MAX_MANIFEST {
            return Err(Error::MediaType {
                reference: reference.to_string(),
                reason: format!("a manifest of {} bytes", body.len()),
            });
        }
        let manifest_digest = crate::wasm::engine::digest(&body);
        if let Some(pinned) = reference.digest() {
            if pinned != manifest_digest {
                return Err(mismatch("manifest", pinned, manifest_digest));
            }
        }
        let layer = wasm_layer(reference, &body)?;
        let size = layer.size as u64;
        let mut blob = client.pull_blob_stream(r, &layer).await.map_err(fail)?;
        let mut bytes = Vec::with_capacity(size as usize);
        use futures::StreamExt as _;
        while let Some(chunk) = blob.stream.next().await {
            let chunk = chunk.map_err(|e| match digest_mismatch(&e) {
                Some((expected, actual)) => mismatch("layer", &expected, actual),
                None => fail(OciDistributionError::IoError(e)),
            })?;
            if (bytes.len() + chunk.len()) as u64 > size {
                return Err(Error::DigestMismatch {
                    reference: reference.to_string(),
                    what: "layer",
                    expected: format!("{} ({size} bytes)", layer.digest),
                    actual: format!("more than {size} bytes"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((manifest_digest, layer, bytes))
    })?;
    let digest = crate::wasm::engine::digest(&bytes);
    if digest != layer.digest || bytes.len() as u64 != layer.size as u64 {
        return Err(mismatch(
            "layer",
            &format!("{} ({} bytes)", layer.digest, layer.size),
            format!("{digest} ({} bytes)", bytes.len()),
        ));
    }

    // a temp file next to the target, checked as `guest check` does, then renamed
    let tmp_path = dir.join(format!(
        ".{}.pull-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp_path);
    let mut tmp = TempFile(Some(tmp_path.clone()));
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp_path)
            .map_err(|e| io(tmp_path.display(), e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| io(tmp_path.display(), e))?;
    }
    crate::wasm::check::check(&tmp_path).map_err(|e| Error::Refused {
        what: format!("{reference} ({digest})"),
        reason: check_reason(e),
    })?;
    std::fs::rename(&tmp_path, out).map_err(|e| io(out.display(), e))?;
    tmp.0 = None;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(Pulled {
        digest,
        manifest_digest,
        size: bytes.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = parse_reference("127.0.0.1:5000/guests/routed:v1").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.to_string(), "127.0.0.1:5000/guests/routed:v1");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse_reference(&format!("oci://reg.example/x@{d}")).unwrap();
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(r.to_string(), format!("reg.example/x@{d}"));
        assert!(parse_push_reference(&format!("reg.example/x@{d}")).is_err());
        assert!(parse_reference("reg.example/x@sha256:abc").is_err());
        assert!(parse_reference("UPPER/Case").is_err());
    }

    #[test]
    fn digests() {
        assert_eq!(
            crate::wasm::engine::digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn docker_config_credentials() {
        let dir = std::env::temp_dir().join(format!("wasm-cni-reg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("config.json");
        // alice:s3cret
        std::fs::write(
            &p,
            r#"{"auths":{"https://127.0.0.1:5443/v1/":{"auth":"YWxpY2U6czNjcmV0"},"other:1":{"auth":"!!"}}}"#,
        )
        .unwrap();
        let o = Options {
            registry_config: Some(p.clone()),
            ..Options::default()
        };
        let r = parse_reference("127.0.0.1:5443/g/x:1").unwrap();
        match credentials(&r, &o).unwrap() {
            RegistryAuth::Basic(u, pw) => {
                assert_eq!((u.as_str(), pw.as_str()), ("alice", "s3cret"))
            }
            other => panic!("{other:?}"),
        }
        let r = parse_reference("elsewhere:5000/g/x:1").unwrap();
        assert!(matches!(
            credentials(&r, &o).unwrap(),
            RegistryAuth::Anonymous
        ));
        let r = parse_reference("other:1/g/x:1").unwrap();
        assert!(credentials(&r, &o)
            .unwrap_err()
            .to_string()
            .contains("base64"));
        let o = Options {
            registry_config: Some(dir.join("missing.json")),
            ..Options::default()
        };
        assert!(credentials(&r, &o).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn manifests() {
        let r = parse_reference("h/x:1").unwrap();
        let d = format!("sha256:{}", "b".repeat(64));
        let ok = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_MEDIA_TYPE}","config":{{"mediaType":"{CONFIG_MEDIA_TYPE}","digest":"{d}","size":2}},"layers":[{{"mediaType":"application/wasm","digest":"{d}","size":10}}]}}"#
        );
        assert_eq!(wasm_layer(&r, ok.as_bytes()).unwrap().size, 10);
        let image = ok.replace(
            CONFIG_MEDIA_TYPE,
            "application/vnd.oci.image.config.v1+json",
        );
        let e = wasm_layer(&r, image.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("config media type"), "{e}");
        let tar = ok.replace("application/wasm", "application/vnd.oci.image.layer.v1.tar");
        let e = wasm_layer(&r, tar.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("layer media type"), "{e}");
        let index = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(wasm_layer(&r, index.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("index"));
    }
}
