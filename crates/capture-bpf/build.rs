//! Compiles the BPF program (src/bpf/l7tap.bpf.c) with clang into an object that the crate
//! embeds. Needs clang (clang-14 on Debian 12); no root, no running kernel.

use libbpf_cargo::SkeletonBuilder;
use std::path::PathBuf;

// A build script fails the build by panicking; the message says what to install or set.
#[allow(clippy::panic)]
fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let src = manifest.join("src/bpf/l7tap.bpf.c");
    let clang = std::env::var("L7TAP_BPF_CLANG").unwrap_or_else(|_| find_clang());
    SkeletonBuilder::new()
        .source(&src)
        .obj(out.join("l7tap.bpf.o"))
        .clang(&clang)
        .clang_args([
            "-I".to_string(),
            manifest.join("src/bpf").display().to_string(),
            "-Wall".to_string(),
            "-Wno-unused-function".to_string(),
        ])
        .build()
        .unwrap_or_else(|e| panic!("compiling {} with {clang}: {e:#}", src.display()));
    for f in ["l7tap.bpf.c", "l7tap.h", "vmlinux.h"] {
        println!("cargo:rerun-if-changed=src/bpf/{f}");
    }
    println!("cargo:rerun-if-env-changed=L7TAP_BPF_CLANG");
}

/// `clang` when it is on PATH, else Debian 12's `clang-14`.
fn find_clang() -> String {
    for c in ["clang", "clang-14"] {
        if std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok()
        {
            return c.to_string();
        }
    }
    "clang".to_string()
}
