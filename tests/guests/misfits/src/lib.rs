//! Components that `wasm-cni guest check` must refuse, one per feature. Their WIT is
//! minimal on purpose: each differs from the runner's world in one way.

/// A component of another world altogether.
#[cfg(feature = "other-world")]
mod fixture {
    wit_bindgen::generate!({
        inline: "package other:thing; world greeter { export greet: func() -> string; }",
    });
    struct G;
    impl Guest for G {
        fn greet() -> String {
            "hello".into()
        }
    }
    export!(G);
}

/// The policy interface without `del`.
#[cfg(feature = "no-del")]
mod fixture {
    wit_bindgen::generate!({
        inline: "package wasm-cni:plugin@0.2.0;
            interface policy {
                add: func(req: string) -> string;
                check: func(req: string) -> string;
                gc: func(req: string) -> string;
                status: func(req: string) -> string;
            }
            world cni-policy { export policy; }",
    });
    struct G;
    impl exports::wasm_cni::plugin::policy::Guest for G {
        fn add(r: String) -> String {
            r
        }
        fn check(r: String) -> String {
            r
        }
        fn gc(r: String) -> String {
            r
        }
        fn status(r: String) -> String {
            r
        }
    }
    export!(G);
}

/// Built against a later, incompatible contract version.
#[cfg(feature = "v03")]
mod fixture {
    wit_bindgen::generate!({
        inline: "package wasm-cni:plugin@0.3.0;
            interface policy {
                add: func(req: string) -> string;
                del: func(req: string) -> string;
                check: func(req: string) -> string;
                gc: func(req: string) -> string;
                status: func(req: string) -> string;
            }
            world cni-policy { export policy; }",
    });
    struct G;
    impl exports::wasm_cni::plugin::policy::Guest for G {
        fn add(r: String) -> String {
            r
        }
        fn del(r: String) -> String {
            r
        }
        fn check(r: String) -> String {
            r
        }
        fn gc(r: String) -> String {
            r
        }
        fn status(r: String) -> String {
            r
        }
    }
    export!(G);
}

/// The right names and version, the wrong signatures (the linker's check catches it).
#[cfg(feature = "bad-types")]
mod fixture {
    wit_bindgen::generate!({
        inline: "package wasm-cni:plugin@0.2.0;
            interface policy {
                add: func(req: u32) -> u32;
                del: func(req: u32) -> u32;
                check: func(req: u32) -> u32;
                gc: func(req: u32) -> u32;
                status: func(req: u32) -> u32;
            }
            world cni-policy { export policy; }",
    });
    struct G;
    impl exports::wasm_cni::plugin::policy::Guest for G {
        fn add(r: u32) -> u32 {
            r
        }
        fn del(r: u32) -> u32 {
            r
        }
        fn check(r: u32) -> u32 {
            r
        }
        fn gc(r: u32) -> u32 {
            r
        }
        fn status(r: u32) -> u32 {
            r
        }
    }
    export!(G);
}
