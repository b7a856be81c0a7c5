//! Fuzz what a runtime hands the runner: CNI_* variables and the config on stdin
//! (including prevResult, runtimeConfig, GC attachments), and the default guest's
//! config parser. Property: every input ends in a result or a CNI error object with a
//! code and a message, never a panic.
//!
//! Input layout: the first line holds the environment as `KEY=VALUE` pairs separated by
//! `\x01`; the rest is stdin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use wasm_cni_fuzz::cni::{self, config, output, Env, NetConf};
use wasm_cni_fuzz::guest_config::Config;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (env_line, stdin) = text.split_once('\n').unwrap_or(("", &text));
    let vars: HashMap<String, String> = env_line
        .split('\u{1}')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let version = config::requested_version(stdin)
        .as_deref()
        .and_then(cni::supported)
        .unwrap_or(cni::LATEST);
    let answer = match Env::from_lookup(|k| vars.get(k).cloned()) {
        Err(e) => output::error(version, &e),
        Ok(_env) => match NetConf::parse(stdin.to_string()) {
            Err(e) => output::error(version, &e),
            Ok(conf) => {
                // what the guest would do with the same text
                let _ = Config::parse(&conf.raw);
                output::version_info(Some(&conf.cni_version.to_string()))
            }
        },
    };
    if answer.get("code").is_some() {
        assert!(answer["code"].as_u64().is_some_and(|c| c > 0));
        assert!(answer["msg"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // the one stdout document always serializes
    serde_json::to_string(&answer).expect("serializable");
});
