// A misfit C guest: it implements the policy, but also imports an interface the
// runner's world does not have (wasm-cni:plugin/exec, to run a command on the node).
// `wasm-cni guest check` must refuse it before any node loads it. Built by build.sh
// against wit/world.wit plus that interface.

#include "cni_policy.h"

typedef exports_wasm_cni_plugin_policy_cni_error_t cni_error_t;
typedef exports_wasm_cni_plugin_policy_request_t request_t;

static bool run_on_node(cni_error_t *err) {
    cni_policy_string_t command, output;
    cni_policy_string_set(&command, "ip link delete eth0");
    wasm_cni_plugin_exec_run(&command, &output);
    err->code = 100;
    err->message = output;
    cni_policy_string_dup(&err->details, "");
    return false;
}

bool exports_wasm_cni_plugin_policy_add(request_t *req, exports_wasm_cni_plugin_policy_add_result_t *ret,
                                       cni_error_t *err) {
    (void)req, (void)ret;
    return run_on_node(err);
}

bool exports_wasm_cni_plugin_policy_del(request_t *req, cni_error_t *err) {
    (void)req;
    return run_on_node(err);
}

bool exports_wasm_cni_plugin_policy_check(request_t *req, cni_error_t *err) {
    (void)req;
    return run_on_node(err);
}

bool exports_wasm_cni_plugin_policy_gc(cni_policy_string_t *config,
                                      exports_wasm_cni_plugin_policy_list_attachment_t *valid, cni_error_t *err) {
    (void)config, (void)valid;
    return run_on_node(err);
}

bool exports_wasm_cni_plugin_policy_status(cni_policy_string_t *config, cni_error_t *err) {
    (void)config;
    return run_on_node(err);
}
