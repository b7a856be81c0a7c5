#!/usr/bin/env bats
# The gcloud/kubectl stubs refuse what the real tools refuse (tables in
# tests/scripts/fixtures/*-flags.tsv, from the tools' reference docs), so that a typo
# in a script fails its tests instead of passing against a permissive stub.

# shellcheck disable=SC2154 # $stderr is set by bats' run --separate-stderr
load test_helper

setup() {
  common_setup
}

@test "gcloud stub: refuses a misspelt flag, as gcloud does (exit 2, unrecognized arguments)" {
  run --separate-stderr gcloud compute instances create vm --zone=europe-west1-b --can-ip-fowrard
  assert_status 2
  assert_contains "$stderr" "ERROR: (gcloud.compute.instances.create) unrecognized arguments: --can-ip-fowrard"
}

@test "gcloud stub: refuses a flag that belongs to another command" {
  run --separate-stderr gcloud compute networks create vpc --region=europe-west1
  assert_status 2
  assert_contains "$stderr" "unrecognized arguments: --region"
  run --separate-stderr gcloud compute firewall-rules delete rule --zone=europe-west1-b
  assert_status 2
  run --separate-stderr gcloud compute routes create r --next-hop-zone=europe-west1-b
  assert_status 2
}

@test "gcloud stub: refuses an unknown command group or verb" {
  run --separate-stderr gcloud compute instance create vm
  assert_status 2
  assert_contains "$stderr" "ERROR: (gcloud) unknown command 'compute instance create'"
  run --separate-stderr gcloud compute routes remove r
  assert_status 2
}

@test "gcloud stub: a switch takes no value; a value flag needs one" {
  run --separate-stderr gcloud compute instances create vm --can-ip-forward=true
  assert_status 2
  run --separate-stderr gcloud compute ssh vm --zone
  assert_status 2
}

@test "gcloud stub: accepts the documented forms (--flag=value, --flag value, global flags anywhere)" {
  run --separate-stderr gcloud compute ssh vm --zone europe-west1-b --quiet --project=p --command=true
  assert_status 0
  run --separate-stderr gcloud --project=p compute routes delete r --quiet
  assert_status 0
  run --separate-stderr gcloud compute networks create v --subnet-mode=custom --description="a b"
  assert_status 0
}

@test "kubectl stub: refuses a misspelt flag or command, as kubectl does (exit 1)" {
  run --separate-stderr kubectl --context=my-k8s get node n -o jsonpath='{.spec.podCIDR}' --ignore-not-foud
  assert_status 1
  assert_contains "$stderr" "unrecognized arguments: --ignore-not-foud"
  run --separate-stderr kubectl config set-cluster c --embed-cert=true
  assert_status 1
  run --separate-stderr kubectl config delete-contexts c
  assert_status 1
  run --separate-stderr kubectl confg view
  assert_status 1
  assert_contains "$stderr" "unknown command"
}

@test "kubectl stub: accepts booleans with =true, short flags with a separate value, global flags before the command" {
  : >"$BATS_TEST_TMPDIR/ca"
  run --separate-stderr kubectl config set-cluster c --server=https://x:6443 --certificate-authority="$BATS_TEST_TMPDIR/ca" --embed-certs=true
  assert_status 0
  run --separate-stderr kubectl --context=my-k8s -n kube-system get node n -o name
  assert_status 0
}

@test "the flag tables list every flag the cluster scripts pass (no script flag is unknown)" {
  # every --flag literal in the scripts' gcloud/kubectl calls appears in a table
  # (lines with "kubeadm " run kubeadm on a node, inside an ssh --command)
  local f missing=()
  while read -r f; do
    grep -qE -- "(^|[[:space:]])${f}(=|[[:space:]]|$)" "$REPO/tests/scripts/fixtures/gcloud-flags.tsv" \
      "$REPO/tests/scripts/fixtures/kubectl-flags.tsv" || missing+=("$f")
  done < <(cat "$REPO"/scripts/{infrastructure,kubernetes,cni-plugin,inter-node-routes}.sh "$REPO/scripts/lib/common.sh" |
    sed -e ':a' -e '/\\$/N; s/\\\n//; ta' | grep -oE -- '(gcloud|kubectl) [^|;&]*' | grep -v "kubeadm " | grep -oE -- ' --[a-z][a-z-]*' | sed 's/^ //' | sort -u)
  [ "${#missing[@]}" -eq 0 ] || { echo "flags missing from the tables: ${missing[*]}" >&2; return 1; }
}
