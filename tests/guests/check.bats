#!/usr/bin/env bats
# `wasm-cni guest check`: accepts every shipped guest, refuses misfits with a reason a
# student can act on.

load helpers

setup() { kit_setup; }

@test "guest check accepts every shipped guest, names the contract version it implements, lists what it uses" {
  local g v
  for g in default routed js-bridge c-bridge py-routed; do
    run "$RUNNER" guest check "$GUESTS/$g.wasm"
    [ "$status" -eq 0 ] || { echo "$g: $output"; false; }
    # the version the guest was built against (the Rust guests move to 0.2.0; the
    # JavaScript, C and Python ones stay 0.1.0), and the same version throughout
    v=${lines[0]##*@}
    [[ $v == 0.2.0 || $v == 0.1.0 ]] || { echo "$g: ${lines[0]}"; false; }
    [[ ${lines[0]} == "ok: $GUESTS/$g.wasm implements wasm-cni:plugin/cni-policy@$v" ]]
    [[ $output == *"export wasm-cni:plugin/policy@$v: add, check, del, gc, status"* ]]
    # none of these has node-level work: the check says so
    [[ $output == *"no wasm-cni:plugin/node-policy export: \`wasm-cni reconcile\` has nothing to run for it"* ]]
    [[ $output == *"import wasm-cni:plugin/links@$v: "*"create-veth"* ]]
    if [ "$v" = 0.1.0 ]; then
      [[ $output == *"served by the 0.1.0 adapter: addresses.list and routes.list answer IPv4 only"* ]]
    else
      [[ $output != *"adapter"* ]]
    fi
  done
  for g in js-bridge c-bridge py-routed; do
    run "$RUNNER" guest check "$GUESTS/$g.wasm"
    [[ ${lines[0]} == *"@0.1.0" ]] || { echo "$g: ${lines[0]}"; false; }
  done
  # the routed policy has no bridge: it never imports create-bridge or set-master
  run "$RUNNER" guest check "$GUESTS/routed.wasm"
  [[ $output != *create-bridge* && $output != *set-master* ]]
}

@test "guest check says what each WASI import gives the guest: nothing of the host" {
  # the C guest needs no WASI at all
  run "$RUNNER" guest check "$GUESTS/c-bridge.wasm"
  [ "$status" -eq 0 ]
  [[ $output != *wasi:* ]]
  # CPython imports WASI; each interface is listed with what the runner gives
  run "$RUNNER" guest check "$GUESTS/py-routed.wasm"
  [ "$status" -eq 0 ]
  echo "$output"
  [[ $output == *"import wasi:cli/environment@0.2."*": empty: no variables, no arguments, no working directory"* ]]
  [[ $output == *"import wasi:random/random@0.2."*": a fixed byte sequence: the same every call, not secret"* ]]
  [[ $output == *"import wasi:filesystem/preopens@0.2."*": no directories: no file can be opened"* ]]
  [[ $output == *"import wasi:sockets/tcp@0.2."*": every use refused"* ]]
  [[ $output != *"not provided"* ]]
}

@test "guest check --cache-dir precompiles: the runner's first call loads, not compiles" {
  cp "$GUESTS/c-bridge.wasm" c.wasm
  run "$RUNNER" guest check --cache-dir cache c.wasm
  [ "$status" -eq 0 ]
  [[ ${lines[1]} == "  "*" KiB component, compiled in "*" ms into cache" ]]
  [ "$(find cache -name '*.cwasm' | wc -l)" -eq 1 ]
  run "$RUNNER" guest check --cache-dir cache c.wasm
  [ "$status" -eq 0 ]
  [[ ${lines[1]} == *"already compiled in cache (loaded in "*" ms)" ]]
  # a misfit is refused all the same
  run "$RUNNER" guest check --cache-dir cache "$MISFITS/no-del.wasm"
  [ "$status" -eq 1 ]
  [[ $output == *"but not del"* ]]
  # an unwritable cache is an error, not a silent compile-at-first-call
  : > not-a-dir
  run "$RUNNER" guest check --cache-dir not-a-dir/x c.wasm
  [ "$status" -eq 1 ]
  [[ $output == *"could not store it in not-a-dir/x"* ]]
}

@test "guest check refuses a C guest that imports an interface outside the world" {
  run "$RUNNER" guest check "$MISFITS/c-exec.wasm"
  [ "$status" -eq 1 ]
  [[ $output == *"imports wasm-cni:plugin/exec@0.2.0, which wasm-cni:plugin 0.2.0 does not have"* ]]
}

@test "guest check refuses a core module, with the way to make a component" {
  run "$RUNNER" guest check "$MISFITS/core-module.wasm"
  [ "$status" -eq 1 ]
  [[ $output == *"a core WebAssembly module, not a component"*"wasm32-wasip2"* ]]
}

@test "guest check refuses a component of another world" {
  run "$RUNNER" guest check "$MISFITS/other-world.wasm"
  [ "$status" -eq 1 ]
  [[ $output == *"does not export wasm-cni:plugin/policy: it is a component of another world (it exports greet); a guest implements wasm-cni:plugin/cni-policy@0.2.0 or wasm-cni:plugin/cni-policy@0.1.0"* ]]
}

@test "guest check refuses a policy without del and names what is missing" {
  run "$RUNNER" guest check "$MISFITS/no-del.wasm"
  [ "$status" -eq 1 ]
  [[ $output == *"exports add, check, gc, status but not del"* ]]
}

@test "guest check refuses a guest built against an incompatible contract version" {
  run "$RUNNER" guest check "$MISFITS/v03.wasm"
  [ "$status" -eq 1 ]
  [[ $output == *"built against wasm-cni:plugin 0.3.0 but this runner speaks wasm-cni:plugin 0.2.0 and 0.1.0"* ]]
}

@test "guest check refuses the right names with the wrong signatures" {
  run "$RUNNER" guest check "$MISFITS/bad-types.wasm"
  [ "$status" -eq 1 ]
  [[ $output == *"does not implement wasm-cni:plugin/cni-policy@0.2.0"*"type mismatch"* ]]
}

@test "guest check names 0.1.0 for the frozen 0.1.0 guests, served by the adapter" {
  local g
  for g in default routed; do
    run "$RUNNER" guest check "$REPO/tests/guests/fixtures/$g-0.1.0.wasm"
    [ "$status" -eq 0 ]
    [[ ${lines[0]} == "ok: $REPO/tests/guests/fixtures/$g-0.1.0.wasm implements wasm-cni:plugin/cni-policy@0.1.0" ]]
    [[ $output == *"served by the 0.1.0 adapter"* ]]
    [[ $output == *"import wasm-cni:plugin/links@0.1.0: "* ]]
    [[ $output != *"@0.2.0"* ]]
  done
}

@test "guest check refuses what is not WebAssembly, or not there" {
  echo 'not wasm' > junk.wasm
  run "$RUNNER" guest check junk.wasm
  [ "$status" -eq 1 ]
  [[ $output == *"not a WebAssembly file"* ]]
  run "$RUNNER" guest check missing.wasm
  [ "$status" -eq 1 ]
  [[ $output == *"cannot read"* ]]
}
