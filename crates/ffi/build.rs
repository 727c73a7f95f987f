//! Writes `l7tap.pc` (pkg-config) next to the built library: `target/<profile>/l7tap.pc`.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    // OUT_DIR is target/<profile>/build/<pkg>-<hash>/out: three levels up is target/<profile>.
    let Some(profile_dir) = out.ancestors().nth(3) else {
        return;
    };
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let include = root.join("../../include");
    let include = include.canonicalize().unwrap_or(include);
    let pc = format!(
        "prefix={lib}\nlibdir={lib}\nincludedir={inc}\n\nName: l7tap\nDescription: L7 traffic capture, parsing and Wasm enrichment (C ABI)\nVersion: {ver}\nLibs: -L${{libdir}} -Wl,-rpath,${{libdir}} -ll7tap_ffi\nCflags: -I${{includedir}}\n",
        lib = profile_dir.display(),
        inc = include.display(),
        ver = std::env::var("CARGO_PKG_VERSION").unwrap_or_default(),
    );
    let _ = std::fs::write(profile_dir.join("l7tap.pc"), pc);
    println!("cargo:rerun-if-changed=build.rs");
}
