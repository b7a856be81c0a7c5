#!/usr/bin/env bats
# `wasm-cni guest check`: accepts every shipped guest, refuses misfits with a reason a
# student can act on.

load helpers

setup() { kit_setup; }

@test "guest check accepts every shipped guest and lists what it uses" {
  local g
  for g in default routed js-bridge; do
    run "$RUNNER" guest check "$GUESTS/$g.wasm"
    [ "$status" -eq 0 ] || { echo "$g: $output"; false; }
    [[ ${lines[0]} == "ok: $GUESTS/$g.wasm implements wasm-cni:plugin/cni-policy@0.1.0" ]]
    [[ $output == *"export wasm-cni:plugin/policy@0.1.0: add, check, del, gc, status"* ]]
    [[ $output == *"import wasm-cni:plugin/links@0.1.0: "*"create-veth"* ]]
  done
  # the routed policy has no bridge: it never imports create-bridge or set-master
  run "$RUNNER" guest check "$GUESTS/routed.wasm"
  [[ $output != *create-bridge* && $output != *set-master* ]]
}

@test "guest check refuses a core module, with the way to make a component" {
  run "$RUNNER" guest check "$MISFITS/core-module.wasm"
  [ "$status" -eq 1 ]
  [[ $output == *"a core WebAssembly module, not a component"*"wasm32-wasip2"* ]]
}

@test "guest check refuses a component of another world" {
  run "$RUNNER" guest check "$MISFITS/other-world.wasm"
  [ "$status" -eq 1 ]
  [[ $output == *"does not export wasm-cni:plugin/policy: it is a component of another world (it exports greet)"* ]]
}

@test "guest check refuses a policy without del and names what is missing" {
  run "$RUNNER" guest check "$MISFITS/no-del.wasm"
  [ "$status" -eq 1 ]
  [[ $output == *"exports add, check, gc, status but not del"* ]]
}

@test "guest check refuses a guest built against an incompatible contract version" {
  run "$RUNNER" guest check "$MISFITS/v03.wasm"
  [ "$status" -eq 1 ]
  [[ $output == *"built against wasm-cni:plugin 0.3.0 but this runner speaks wasm-cni:plugin 0.1.0"* ]]
}

@test "guest check refuses the right names with the wrong signatures" {
  run "$RUNNER" guest check "$MISFITS/bad-types.wasm"
  [ "$status" -eq 1 ]
  [[ $output == *"type mismatch"* ]]
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
