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
