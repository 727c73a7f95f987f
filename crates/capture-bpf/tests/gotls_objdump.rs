//! The probe points found in a real Go binary (tests/live/go_tls.go, built with Debian's Go)
//! against Go's own disassembler, `go tool objdump`: the entries of crypto/tls.(*Conn).Write
//! and Read, and every RET of Read, at the same file offsets. Needs `go`; without it the test
//! prints why and passes (CI installs golang-go, so it runs there).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use l7tap_capture_bpf::gotls::{self, READ_SYMBOL, WRITE_SYMBOL};
use object::{Object, ObjectSection};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn probe_points_match_go_tool_objdump() {
    if !Command::new("sh")
        .args(["-c", "command -v go"])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("SKIP: go is not installed");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::temp_dir().join(format!("l7tap-gotls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("go_tls");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(root.join("tests/live/go_tls.go"))
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GO111MODULE", "off")
        .status()
        .unwrap();
    assert!(built.success(), "go_tls.go builds");
    let targets = gotls::targets_of_file(&bin).expect("a Go TLS binary");
    assert!(targets.go_version.starts_with("go1."), "{targets:?}");

    // Go's disassembly of the two functions: address and instruction per line.
    let out = Command::new("go")
        .args(["tool", "objdump", "-s"])
        .arg(r"^crypto/tls\.\(\*Conn\)\.(Write|Read)$")
        .arg(&bin)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut entries = Vec::new();
    let mut rets = BTreeSet::new(); // of Read
    let mut first_of_function = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("TEXT ") {
            let name = rest.split("(SB)").next().unwrap();
            assert!(name == WRITE_SYMBOL || name == READ_SYMBOL, "{name}");
            entries.push((name.to_string(), 0u64));
            first_of_function = true;
            continue;
        }
        let fields: Vec<&str> = line.split('\t').filter(|f| !f.is_empty()).collect();
        if fields.len() < 4 {
            continue;
        }
        let addr = u64::from_str_radix(fields[1].trim().trim_start_matches("0x"), 16).unwrap();
        if first_of_function {
            entries.last_mut().unwrap().1 = addr;
            first_of_function = false;
        }
        if fields[3].trim() == "RET" && entries.last().is_some_and(|e| e.0 == READ_SYMBOL) {
            rets.insert(addr);
        }
    }
    assert_eq!(entries.len(), 2, "{text}");
    assert!(!rets.is_empty(), "{text}");

    // Addresses to file offsets, through the section that holds the code.
    let data = std::fs::read(&bin).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let text_sec = file.section_by_name(".text").unwrap();
    let (off, _) = text_sec.file_range().unwrap();
    let to_offset = |a: u64| a - text_sec.address() + off;
    for (name, addr) in &entries {
        let want = if name == WRITE_SYMBOL {
            targets.write_entry
        } else {
            targets.read_entry
        };
        assert_eq!(to_offset(*addr), want, "{name}");
    }
    let found: BTreeSet<u64> = targets.read_rets.iter().copied().collect();
    let objdump: BTreeSet<u64> = rets.iter().map(|&a| to_offset(a)).collect();
    assert_eq!(found, objdump);
    let _ = std::fs::remove_dir_all(&dir);
}
