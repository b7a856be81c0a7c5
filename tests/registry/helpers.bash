# shellcheck shell=bash
# The registry tests: `wasm-cni guest push` and `guest pull` against a real registry,
# Debian's docker-registry (distribution 2.8), listening on 127.0.0.1 inside a network
# namespace made for each test; the client, skopeo and the checks run in that
# namespace. Teardown removes the registry process, the namespace and the files, also
# when a test fails. The root namespace is never changed.

bats_require_minimum_version 1.5.0

REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
RUNNER=${WASM_CNI_RUNNER:-$REPO/dist/bin/wasm-cni}
# shellcheck disable=SC2034  # used by the .bats file
GUEST=${WASM_CNI_GUEST:-$REPO/dist/guests/routed.wasm}
# shellcheck disable=SC2034
MISFITS=$REPO/dist/test/misfits
# shellcheck disable=SC2034
PASSWORD=s3cret-registry-pw
PORT=5000

registry_setup() {
  [ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
  local t
  for t in docker-registry skopeo htpasswd openssl jq ip; do
    command -v "$t" >/dev/null || { echo "$t missing: run scripts/setup.sh" >&2; return 1; }
  done
  [ -x "$RUNNER" ] || { echo "runner $RUNNER missing: run scripts/build.sh" >&2; return 1; }
  [ -x "$(dirname "$RUNNER")/wasm-cni-registry" ] ||
    { echo "wasm-cni-registry missing next to $RUNNER: run scripts/build.sh" >&2; return 1; }
  W=$BATS_TEST_TMPDIR/w
  mkdir -p "$W/docker"
  # the machine's registry credentials play no part (skopeo_ns: the same for skopeo;
  # not exported: the registry reads REGISTRY_* variables as its configuration)
  export DOCKER_CONFIG=$W/docker
  NS=wcreg-$$-$BATS_TEST_NUMBER
  REGISTRY_PID=""
  ip netns add "$NS"
  ip -n "$NS" link set lo up
}

registry_teardown() {
  stop_registry
  if [ -n "${NS:-}" ]; then
    # anything of ours still in the namespace (a client a failed test left behind)
    local p
    for p in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
  fi
}

stop_registry() {
  [ -n "${REGISTRY_PID:-}" ] || return 0
  kill -TERM "$REGISTRY_PID" 2>/dev/null || true
  local i
  for i in $(seq 50); do kill -0 "$REGISTRY_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$REGISTRY_PID" 2>/dev/null || true
  wait "$REGISTRY_PID" 2>/dev/null || true
  REGISTRY_PID=""
}

# A CA and a certificate for 127.0.0.1 signed by it, in $W (EC keys: quick).
make_ca() {
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -days 2 -subj /CN=wasm-cni-test-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$W/ca.key" -out "$W/ca.pem" 2>/dev/null
  openssl req "${ec[@]}" -subj /CN=127.0.0.1 -keyout "$W/server.key" -out "$W/server.csr" 2>/dev/null
  printf '%s\n' subjectAltName=IP:127.0.0.1 basicConstraints=CA:FALSE \
    keyUsage=critical,digitalSignature extendedKeyUsage=serverAuth > "$W/server.ext"
  openssl x509 -req -in "$W/server.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial \
    -days 2 -extfile "$W/server.ext" -out "$W/server.pem" 2>/dev/null
}

# start_registry [plain|tls]: plain HTTP on 127.0.0.1:5000 in $NS, or HTTPS with a
# self-signed CA ($W/ca.pem) and htpasswd basic auth (alice / $PASSWORD) on :5443.
# Storage in $W/storage.
start_registry() {
  local mode=${1:-plain} i
  PORT=5000
  [ "$mode" = tls ] && PORT=5443
  mkdir -p "$W/storage"
  {
    printf 'version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n'
    printf 'storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n' "$W/storage"
    printf 'http:\n  addr: 127.0.0.1:%s\n  secret: wasm-cni-test\n' "$PORT"
    if [ "$mode" = tls ]; then
      make_ca
      htpasswd -Bbn alice "$PASSWORD" > "$W/htpasswd"
      printf '  tls:\n    certificate: %s\n    key: %s\n' "$W/server.pem" "$W/server.key"
      printf 'auth:\n  htpasswd:\n    realm: wasm-cni-test\n    path: %s\n' "$W/htpasswd"
    fi
  } > "$W/registry.yml"
  ip netns exec "$NS" docker-registry serve "$W/registry.yml" >"$W/registry.log" 2>&1 3>&- &
  REGISTRY_PID=$!
  for i in $(seq 100); do
    ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null && return 0
    kill -0 "$REGISTRY_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "registry did not start ($i tries):" >&2
  cat "$W/registry.log" >&2
  return 1
}

# guest ARGS...: `wasm-cni guest ARGS...` in the namespace (stdin passed on)
guest() {
  ip netns exec "$NS" "$RUNNER" guest "$@"
}

# with_password PW guest ARGS...: the same, with PW on stdin (--password-stdin)
with_password() {
  local pw=$1
  shift
  printf '%s\n' "$pw" | "$@"
}

skopeo_ns() {
  REGISTRY_AUTH_FILE=$W/skopeo-auth.json ip netns exec "$NS" skopeo "$@"
}

sha256_of() {
  echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"
}

# blob_file HEX: the blob file a digest is stored in
blob_file() {
  echo "$W/storage/docker/registry/v2/blobs/sha256/${1:0:2}/$1/data"
}

# craft DIR FILE CONFIG_MEDIA_TYPE LAYER_MEDIA_TYPE: an OCI image layout (tag "t")
# holding FILE as the one layer, for skopeo to copy into the registry: artifacts
# that `guest push` would refuse to write.
craft() {
  local d=$1 f=$2 cmt=$3 lmt=$4 lh ch mh cfg man
  rm -rf "$d"
  mkdir -p "$d/blobs/sha256"
  lh=$(sha256sum "$f" | cut -d' ' -f1)
  cp "$f" "$d/blobs/sha256/$lh"
  cfg='{"architecture":"wasm","os":"wasip2","layerDigests":["sha256:'$lh'"]}'
  printf '%s' "$cfg" > "$d/cfg"
  ch=$(sha256sum "$d/cfg" | cut -d' ' -f1)
  mv "$d/cfg" "$d/blobs/sha256/$ch"
  man=$(jq -cn --arg cmt "$cmt" --arg lmt "$lmt" --arg c "sha256:$ch" --arg l "sha256:$lh" \
    --argjson cs "${#cfg}" --argjson ls "$(stat -c %s "$f")" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: $cmt, digest: $c, size: $cs},
      layers: [{mediaType: $lmt, digest: $l, size: $ls}]}')
  printf '%s' "$man" > "$d/m"
  mh=$(sha256sum "$d/m" | cut -d' ' -f1)
  mv "$d/m" "$d/blobs/sha256/$mh"
  echo '{"imageLayoutVersion":"1.0.0"}' > "$d/oci-layout"
  jq -cn --arg m "sha256:$mh" --argjson s "${#man}" \
    '{schemaVersion: 2, manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: $m, size: $s, annotations: {"org.opencontainers.image.ref.name": "t"}}]}' > "$d/index.json"
}

# put_artifact NAME FILE CONFIG_MT LAYER_MT: push a crafted artifact with skopeo to
# 127.0.0.1:$PORT/NAME (plain registry)
put_artifact() {
  craft "$W/layout-${1//[:\/]/-}" "$2" "$3" "$4"
  skopeo_ns copy -q --dest-tls-verify=false "oci:$W/layout-${1//[:\/]/-}:t" "docker://127.0.0.1:$PORT/$1"
}

# only_files DIR [NAME...]: DIR holds exactly the NAMEs (nothing half-written left)
only_files() {
  local d=$1
  shift
  local want have
  want=$(printf '%s\n' "$@" | sort)
  have=$(ls -A "$d" | sort)
  [ "$have" = "$want" ] || { echo "in $d: expected [$want], found [$have]" >&2; return 1; }
}
