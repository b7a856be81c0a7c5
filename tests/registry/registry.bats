#!/usr/bin/env bats
# `wasm-cni guest push` / `guest pull` against a real registry (Debian's docker-registry,
# distribution 2.8) in a namespace made per test: plain HTTP, TLS with a self-signed CA
# and basic auth, what another client (skopeo) reads, and every refusal writing nothing.
# shellcheck disable=SC2154  # output, stderr and status are set by bats' run

load helpers

setup() { registry_setup; }
teardown() { registry_teardown; }

@test "plain HTTP (--insecure): push prints REF@digest, two pulls write the pushed bytes and print their sha256" {
  start_registry plain
  local ref=127.0.0.1:5000/guests/routed:v1
  run --separate-stderr guest push "$GUEST" "$ref" --insecure
  [ "$status" -eq 0 ]
  [[ $output =~ ^$ref@sha256:[0-9a-f]{64}$ ]]
  local pinned=$output
  mkdir "$W/node-a" "$W/node-b" "$W/node-c"
  run --separate-stderr guest pull "$ref" --insecure -o "$W/node-a/guest.wasm"
  [ "$status" -eq 0 ]
  [ "$output" = "$(sha256_of "$GUEST")" ]
  [[ $stderr == *"$ref -> $W/node-a/guest.wasm"* ]]
  run --separate-stderr guest pull "oci://$ref" --insecure -o "$W/node-b/guest.wasm"
  [ "$status" -eq 0 ]
  [ "$output" = "$(sha256_of "$GUEST")" ]
  cmp "$W/node-a/guest.wasm" "$W/node-b/guest.wasm"
  cmp "$W/node-a/guest.wasm" "$GUEST"
  # by digest, the reference push printed
  run --separate-stderr guest pull "$pinned" --insecure -o "$W/node-c/guest.wasm"
  [ "$status" -eq 0 ]
  cmp "$W/node-c/guest.wasm" "$GUEST"
  only_files "$W/node-a" guest.wasm
  only_files "$W/node-c" guest.wasm
  "$RUNNER" guest check "$W/node-a/guest.wasm"
}

@test "skopeo reads what guest push wrote: OCI manifest, wasm config v0, one application/wasm layer" {
  start_registry plain
  local ref=127.0.0.1:5000/guests/routed:v1 src=docker://127.0.0.1:5000/guests/routed:v1
  run --separate-stderr guest push "$GUEST" "$ref" --insecure
  [ "$status" -eq 0 ]
  local pinned=$output
  skopeo_ns inspect --raw --tls-verify=false "$src" > "$W/manifest.json"
  jq . "$W/manifest.json"
  # the manifest's digest is the one push printed
  [ "${pinned#*@}" = "$(sha256_of "$W/manifest.json")" ]
  [ "$(jq -r .mediaType "$W/manifest.json")" = application/vnd.oci.image.manifest.v1+json ]
  [ "$(jq -r .config.mediaType "$W/manifest.json")" = application/vnd.wasm.config.v0+json ]
  [ "$(jq -r '.layers | length' "$W/manifest.json")" = 1 ]
  [ "$(jq -r '.layers[0].mediaType' "$W/manifest.json")" = application/wasm ]
  [ "$(jq -r '.layers[0].digest' "$W/manifest.json")" = "$(sha256_of "$GUEST")" ]
  [ "$(jq -r '.layers[0].size' "$W/manifest.json")" = "$(stat -c %s "$GUEST")" ]
  skopeo_ns inspect --raw --config --tls-verify=false "$src" > "$W/config.json"
  jq . "$W/config.json"
  [ "$(jq -r .architecture "$W/config.json")" = wasm ]
  [ "$(jq -r .os "$W/config.json")" = wasip2 ]
  [ "$(jq -r '.layerDigests[0]' "$W/config.json")" = "$(sha256_of "$GUEST")" ]
  [ "$(jq -r .component.target "$W/config.json")" = wasm-cni:plugin/cni-policy@0.2.0 ]
  jq -e '.component.exports | index("wasm-cni:plugin/policy@0.2.0")' "$W/config.json"
  jq -e '.component.imports | index("wasm-cni:plugin/links@0.2.0")' "$W/config.json"
  # and skopeo's copy of the layer is the component
  skopeo_ns copy -q --src-tls-verify=false "$src" "dir:$W/copy"
  cmp "$W/copy/$(sha256sum "$GUEST" | cut -d' ' -f1)" "$GUEST"
}

@test "TLS with a self-signed CA and basic auth: --ca-file, --username/--password-stdin, a docker config" {
  start_registry tls
  local ref=127.0.0.1:5443/guests/routed:v1
  run --separate-stderr with_password "$PASSWORD" guest push "$GUEST" "$ref" \
    --ca-file "$W/ca.pem" --username alice --password-stdin
  [ "$status" -eq 0 ]
  [[ $output =~ ^$ref@sha256:[0-9a-f]{64}$ ]]
  # credentials from $DOCKER_CONFIG/config.json (the default place)
  jq -n --arg a "$(printf 'alice:%s' "$PASSWORD" | base64 -w0)" \
    '{auths: {"127.0.0.1:5443": {auth: $a}}}' > "$DOCKER_CONFIG/config.json"
  mkdir "$W/node-a" "$W/node-b"
  run --separate-stderr guest pull "$ref" --ca-file "$W/ca.pem" -o "$W/node-a/guest.wasm"
  [ "$status" -eq 0 ]
  [ "$output" = "$(sha256_of "$GUEST")" ]
  # and from --registry-config, keyed the way docker login writes a URL
  jq -n --arg a "$(printf 'alice:%s' "$PASSWORD" | base64 -w0)" \
    '{auths: {"https://127.0.0.1:5443/v1/": {auth: $a}}}' > "$W/other-config.json"
  rm "$DOCKER_CONFIG/config.json"
  run --separate-stderr guest pull "$ref" --ca-file "$W/ca.pem" --registry-config "$W/other-config.json" \
    -o "$W/node-b/guest.wasm"
  [ "$status" -eq 0 ]
  cmp "$W/node-a/guest.wasm" "$GUEST"
  cmp "$W/node-b/guest.wasm" "$GUEST"
  skopeo_ns inspect --raw --tls-verify=false --creds "alice:$PASSWORD" "docker://$ref" > "$W/manifest.json"
  [ "$(jq -r .config.mediaType "$W/manifest.json")" = application/vnd.wasm.config.v0+json ]
  [ "$(jq -r '.layers[0].mediaType' "$W/manifest.json")" = application/wasm ]
}

@test "TLS: a wrong password, no credentials, an unknown CA and plain HTTP each fail clearly and write nothing" {
  start_registry tls
  local ref=127.0.0.1:5443/guests/routed:v1
  run --separate-stderr with_password "$PASSWORD" guest push "$GUEST" "$ref" \
    --ca-file "$W/ca.pem" --username alice --password-stdin
  [ "$status" -eq 0 ]
  mkdir "$W/node"
  run --separate-stderr with_password wrong guest pull "$ref" --ca-file "$W/ca.pem" \
    --username alice --password-stdin -o "$W/node/guest.wasm"
  echo "$stderr"
  [ "$status" -eq 1 ]
  [[ $stderr == *"$ref: the registry 127.0.0.1:5443 refused the credentials given (401 Unauthorized)"* ]]
  run --separate-stderr with_password wrong guest push "$GUEST" "$ref" --ca-file "$W/ca.pem" \
    --username alice --password-stdin
  echo "$stderr"
  [ "$status" -eq 1 ]
  [[ $stderr == *"refused the credentials given (401 Unauthorized)"* ]]
  run --separate-stderr guest pull "$ref" --ca-file "$W/ca.pem" -o "$W/node/guest.wasm"
  echo "$stderr"
  [ "$status" -eq 1 ]
  [[ $stderr == *"$ref: the registry 127.0.0.1:5443 refused an anonymous request"* ]]
  run --separate-stderr with_password "$PASSWORD" guest pull "$ref" --username alice --password-stdin \
    -o "$W/node/guest.wasm"
  echo "$stderr"
  [ "$status" -eq 1 ]
  [[ $stderr == *"$ref: cannot reach the registry 127.0.0.1:5443"*"certificate"*"--ca-file"* ]]
  run --separate-stderr with_password "$PASSWORD" guest pull "$ref" --insecure --username alice \
    --password-stdin -o "$W/node/guest.wasm"
  echo "$stderr"
  [ "$status" -eq 1 ]
  [[ $stderr == *"$ref: "*"HTTPS"* ]]
  only_files "$W/node"
}

@test "a tampered layer or manifest in the registry's storage is refused (digest mismatch); the current guest stays" {
  start_registry plain
  local ref=127.0.0.1:5000/guests/routed:v1 hex
  run --separate-stderr guest push "$GUEST" "$ref" --insecure
  [ "$status" -eq 0 ]
  local pinned=$output
  mkdir "$W/node"
  cp "$REPO/dist/guests/default.wasm" "$W/node/guest.wasm"   # the node's current guest
  hex=$(sha256sum "$GUEST" | cut -d' ' -f1)
  [ -f "$(blob_file "$hex")" ]
  printf 'X' | dd of="$(blob_file "$hex")" bs=1 seek=1000 conv=notrunc status=none
  run --separate-stderr guest pull "$ref" --insecure -o "$W/node/guest.wasm"
  echo "$stderr"
  [ "$status" -eq 1 ]
  [[ $stderr == *"$ref: digest mismatch on the layer: expected sha256:$hex, got sha256:"* ]]
  cmp "$W/node/guest.wasm" "$REPO/dist/guests/default.wasm"
  only_files "$W/node" guest.wasm
  # the manifest: pulled by the digest push printed, its stored bytes changed
  hex=${pinned#*@sha256:}
  sed -i 's/"schemaVersion":2/"schemaVersion": 2/' "$(blob_file "$hex")"
  run --separate-stderr guest pull "$pinned" --insecure -o "$W/node/guest.wasm"
  echo "$stderr"
  [ "$status" -eq 1 ]
  [[ $stderr == *"$pinned: digest mismatch on the manifest: expected sha256:$hex, got sha256:"* ]]
  cmp "$W/node/guest.wasm" "$REPO/dist/guests/default.wasm"
  only_files "$W/node" guest.wasm
}

@test "push refuses a core module and a component of another world; nothing reaches the registry" {
  start_registry plain
  run --separate-stderr guest push "$MISFITS/core-module.wasm" 127.0.0.1:5000/guests/bad:v1 --insecure
  echo "$stderr"
  [ "$status" -eq 1 ]
  [ -z "$output" ]
  [[ $stderr == *"core-module.wasm: refused: a core WebAssembly module, not a component"* ]]
  run --separate-stderr guest push "$MISFITS/other-world.wasm" 127.0.0.1:5000/guests/bad:v1 --insecure
  echo "$stderr"
  [ "$status" -eq 1 ]
  [[ $stderr == *"other-world.wasm: refused: does not export wasm-cni:plugin/policy: it is a component of another world"* ]]
  run skopeo_ns inspect --raw --tls-verify=false docker://127.0.0.1:5000/guests/bad:v1
  [ "$status" -ne 0 ]
  [ -z "$(find "$W/storage" -type f -name data 2>/dev/null)" ]
}

@test "pull refuses what another client pushed: a component of another world, a core module, a container image" {
  start_registry plain
  local wasm_cfg=application/vnd.wasm.config.v0+json
  put_artifact guests/other:v1 "$MISFITS/other-world.wasm" "$wasm_cfg" application/wasm
  put_artifact guests/core:v1 "$MISFITS/core-module.wasm" "$wasm_cfg" application/wasm
  put_artifact guests/image:v1 "$GUEST" application/vnd.oci.image.config.v1+json \
    application/vnd.oci.image.layer.v1.tar
  mkdir "$W/node"
  cp "$REPO/dist/guests/default.wasm" "$W/node/guest.wasm"
  run --separate-stderr guest pull 127.0.0.1:5000/guests/other:v1 --insecure -o "$W/node/guest.wasm"
  echo "$stderr"
  [ "$status" -eq 1 ]
  [[ $stderr == *"127.0.0.1:5000/guests/other:v1 (sha256:"*"): refused: does not export wasm-cni:plugin/policy: it is a component of another world"* ]]
  run --separate-stderr guest pull 127.0.0.1:5000/guests/core:v1 --insecure -o "$W/node/guest.wasm"
  echo "$stderr"
  [ "$status" -eq 1 ]
  [[ $stderr == *"127.0.0.1:5000/guests/core:v1 (sha256:"*"): refused: a core WebAssembly module"* ]]
  run --separate-stderr guest pull 127.0.0.1:5000/guests/image:v1 --insecure -o "$W/node/guest.wasm"
  echo "$stderr"
  [ "$status" -eq 1 ]
  [[ $stderr == *"127.0.0.1:5000/guests/image:v1: not a Wasm component artifact: config media type application/vnd.oci.image.config.v1+json"* ]]
  cmp "$W/node/guest.wasm" "$REPO/dist/guests/default.wasm"
  only_files "$W/node" guest.wasm
}

@test "an unknown tag, a registry that is down, and usage errors: a clear error, nothing written" {
  start_registry plain
  mkdir "$W/node"
  run --separate-stderr guest pull 127.0.0.1:5000/guests/routed:nope --insecure -o "$W/node/guest.wasm"
  echo "$stderr"
  [ "$status" -eq 1 ]
  [[ $stderr == *"127.0.0.1:5000/guests/routed:nope: not found in the registry: manifest unknown"* ]]
  stop_registry
  run --separate-stderr guest pull 127.0.0.1:5000/guests/routed:v1 --insecure -o "$W/node/guest.wasm"
  echo "$stderr"
  [ "$status" -eq 1 ]
  [[ $stderr == *"127.0.0.1:5000/guests/routed:v1: cannot reach the registry 127.0.0.1:5000: "*"Connection refused"* ]]
  run --separate-stderr guest push "$GUEST" 127.0.0.1:5000/guests/routed:v1 --insecure
  echo "$stderr"
  [ "$status" -eq 1 ]
  [[ $stderr == *"cannot reach the registry 127.0.0.1:5000"* ]]
  only_files "$W/node"
  # usage: exit 2
  run guest pull 127.0.0.1:5000/guests/routed:v1 --insecure
  [ "$status" -eq 2 ]
  run guest pull 'Not A Reference' -o "$W/node/x.wasm"
  [ "$status" -eq 2 ]
  [[ $output == *"is not a registry reference"* ]]
  run guest push "$GUEST" "127.0.0.1:5000/guests/routed@sha256:$(printf '0%.0s' $(seq 64))"
  [ "$status" -eq 2 ]
  [[ $output == *"push to a tag"* ]]
  run guest pull 127.0.0.1:5000/guests/routed:v1 --insecure --ca-file "$GUEST" -o "$W/node/x.wasm"
  [ "$status" -eq 2 ]
  run guest pull 127.0.0.1:5000/guests/routed:v1 --username alice -o "$W/node/x.wasm"
  [ "$status" -eq 2 ]
  run guest push --help
  [ "$status" -eq 0 ]
  [[ $output == *"--password-stdin"* ]]
  only_files "$W/node"
}
