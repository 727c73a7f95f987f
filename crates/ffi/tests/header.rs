//! The committed C header (`include/l7tap.h`) is what cbindgen makes of the code today.
#![allow(clippy::unwrap_used, clippy::panic)] // tests fail loudly

use std::path::PathBuf;

#[test]
fn header_matches_the_code() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .unwrap()
        .write(&mut generated);
    let path = crate_dir.join("../../include/l7tap.h");
    if std::env::var("L7TAP_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/l7tap.h is out of date: regenerate it with `L7TAP_BLESS=1 cargo test -p l7tap-ffi --test header`"
    );
}
