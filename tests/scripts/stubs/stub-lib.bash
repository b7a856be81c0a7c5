# shellcheck shell=bash
# Shared by the test stubs (gcloud, kubectl, syscmd, fake-wasm-cni). Not a test itself.
#
# STUB_LOG        file every stub appends its argv to, one line per call: "NAME ARGS..."
# STUB_FAIL       glob matched against that line; a matching call fails ...
# STUB_FAIL_MSG   ... printing this on stderr (default "ERROR: stubbed failure") ...
# STUB_FAIL_RC    ... with this exit code (default 1) ...
# STUB_FAIL_TIMES ... only for the first N matching calls (default: every one)

stub_record() {
  : "${STUB_LOG:?STUB_LOG must name the call log}"
  STUB_LINE="$*"
  printf '%s\n' "$STUB_LINE" >>"$STUB_LOG"
}

stub_maybe_fail() {
  [[ -n "${STUB_FAIL:-}" ]] || return 0
  # shellcheck disable=SC2053 # STUB_FAIL is a glob on purpose
  [[ "$STUB_LINE" == $STUB_FAIL ]] || return 0
  if [[ -n "${STUB_FAIL_TIMES:-}" ]]; then
    local n=0 counter="$STUB_LOG.failcount"
    if [[ -f "$counter" ]]; then n="$(<"$counter")"; fi
    ((n < STUB_FAIL_TIMES)) || return 0
    printf '%s\n' "$((n + 1))" >"$counter"
  fi
  printf '%s\n' "${STUB_FAIL_MSG:-ERROR: stubbed failure}" >&2
  exit "${STUB_FAIL_RC:-1}"
}

# stub_check_args TABLE TOOL ARGS...: refuse what the real TOOL refuses: a command
# path that is not in TABLE (tests/scripts/fixtures/*-flags.tsv) or a flag that the
# command does not take. gcloud answers exit 2, kubectl exit 1, as the real ones do.
stub_check_args() {
  local table=$1 tool=$2
  shift 2
  local -A cmd_flags=() takes_value=()
  local cmd fl f
  while IFS=$'\t' read -r cmd fl; do
    [[ -z "$cmd" || "$cmd" == \#* ]] && continue
    cmd_flags["$cmd"]=" $fl "
    for f in $fl; do
      if [[ "$f" == *= ]]; then takes_value["${f%=}"]=1; fi
    done
  done <"$table"
  local -a pos=() names=() inline=()
  local a name
  while (($# > 0)); do
    a=$1
    shift
    if [[ "$a" == -- ]]; then break; fi
    if [[ "$a" == -?* ]]; then
      name=${a%%=*}
      names+=("$name")
      if [[ "$a" == *=* ]]; then
        inline+=(1)
      else
        inline+=(0)
        if [[ -n "${takes_value[$name]:-}" ]]; then
          if (($# == 0)); then stub_refuse "$tool" "" "flag needs an argument: $name"; fi
          shift
        fi
      fi
    else
      pos+=("$a")
    fi
  done
  local k best=""
  for ((k = ${#pos[@]}; k >= 1; k--)); do
    cmd="${pos[*]:0:k}"
    if [[ -n "${cmd_flags[$cmd]+x}" && "$cmd" != "*" ]]; then
      best=$cmd
      break
    fi
  done
  [[ -n "$best" ]] || stub_refuse "$tool" "" "unknown command '${pos[*]:0:3}'"
  local i allowed
  allowed="${cmd_flags[$best]} ${cmd_flags["*"]:-} "
  for i in "${!names[@]}"; do
    name=${names[i]}
    if [[ "$allowed" == *" $name= "* ]]; then
      continue
    elif [[ "$allowed" == *" $name "* ]]; then
      # a switch: kubectl also takes --x=true|false, gcloud does not
      if [[ "${inline[i]}" == 1 && "$tool" != kubectl ]]; then
        stub_refuse "$tool" "$best" "argument $name: ignored explicit argument"
      fi
      continue
    fi
    stub_refuse "$tool" "$best" "unrecognized arguments: $name"
  done
}

stub_refuse() { # TOOL COMMAND MESSAGE
  if [[ "$1" == gcloud ]]; then
    local where=gcloud
    [[ -z "$2" ]] || where="gcloud.${2// /.}"
    printf 'ERROR: (%s) %s (stub: not in tests/scripts/fixtures/gcloud-flags.tsv)\n' "$where" "$3" >&2
    exit 2
  fi
  printf 'error: %s (stub: not in tests/scripts/fixtures/kubectl-flags.tsv)\n' "$3" >&2
  exit 1
}

# shellcheck disable=SC2034 # used by the stubs that source this file
STUB_FIXTURES="$(cd "$(dirname "${BASH_SOURCE[0]}")/../fixtures" && pwd)"
