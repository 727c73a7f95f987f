//! Go's crypto/tls: where to probe a Go binary for plaintext.
//!
//! Go links its TLS into each binary, so there is no shared library to probe once. For a Go
//! binary (amd64, register ABI: Go 1.17 and later, told by the version in `.go.buildinfo`,
//! which Go writes inline from 1.18 on) this finds `crypto/tls.(*Conn).Write` and `Read` in
//! the symbol table, the file offsets of their first instructions, and those of every RET of
//! `Read`, decoded with iced-x86 so a probe never lands inside an instruction. The kernel side
//! (`go_tls_*` in l7tap.bpf.c) reports a Write at its entry and a Read at its RETs. Stripped
//! binaries (no `.symtab`) are not probed.

use object::{Object, ObjectSection, ObjectSymbol};
use std::path::Path;

/// The symbols probed.
pub const WRITE_SYMBOL: &str = "crypto/tls.(*Conn).Write";
/// See [`WRITE_SYMBOL`].
pub const READ_SYMBOL: &str = "crypto/tls.(*Conn).Read";

/// At most this many RET instructions are probed in `Read` (Go's functions have a handful).
pub const MAX_RETS: usize = 64;

/// File offsets to probe in one Go binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoTlsTargets {
    /// The Go release that built it ("go1.19.8").
    pub go_version: String,
    /// Entry of `crypto/tls.(*Conn).Write`.
    pub write_entry: u64,
    /// Entry of `crypto/tls.(*Conn).Read`.
    pub read_entry: u64,
    /// Every RET instruction of `Read`.
    pub read_rets: Vec<u64>,
}

/// Why a binary is not probed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotProbed {
    /// Not an x86-64 ELF file built by Go 1.17 or later with crypto/tls linked in.
    #[error("not a Go binary using crypto/tls: {0}")]
    NotGoTls(String),
    /// A Go TLS binary that cannot be probed safely.
    #[error("cannot be probed: {0}")]
    Unsupported(String),
}

/// Finds the probe points of `path` (read lazily: only the headers, the build info, the
/// symbol table and the two functions).
pub fn targets_of_file(path: &Path) -> Result<GoTlsTargets, NotProbed> {
    let file = std::fs::File::open(path)
        .map_err(|e| NotProbed::NotGoTls(format!("{}: {e}", path.display())))?;
    let cache = object::ReadCache::new(file);
    targets(&cache)
}

/// [`targets_of_file`] on the bytes of a file (or anything `object` reads).
pub fn targets<'d, R: object::ReadRef<'d>>(data: R) -> Result<GoTlsTargets, NotProbed> {
    let file = object::File::parse(data).map_err(|e| NotProbed::NotGoTls(e.to_string()))?;
    if file.architecture() != object::Architecture::X86_64 {
        return Err(NotProbed::NotGoTls("not x86-64".into()));
    }
    let info = file
        .section_by_name(".go.buildinfo")
        .ok_or_else(|| NotProbed::NotGoTls("no .go.buildinfo section".into()))?;
    let info = info
        .data()
        .map_err(|e| NotProbed::NotGoTls(format!(".go.buildinfo: {e}")))?;
    let go_version = go_version(info).ok_or_else(|| {
        NotProbed::Unsupported("Go older than 1.18 (no inline build info)".into())
    })?;
    let minor = go_version
        .strip_prefix("go1.")
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| NotProbed::Unsupported(format!("unknown Go version {go_version}")))?;
    if minor < 17 {
        return Err(NotProbed::Unsupported(format!(
            "{go_version} passes arguments on the stack (register ABI from go1.17)"
        )));
    }
    let mut write = None;
    let mut read = None;
    for sym in file.symbols() {
        match sym.name() {
            Ok(WRITE_SYMBOL) => write = Some(sym),
            Ok(READ_SYMBOL) => read = Some(sym),
            _ => {}
        }
    }
    let (Some(write), Some(read)) = (write, read) else {
        return Err(NotProbed::NotGoTls(format!(
            "no {WRITE_SYMBOL} / {READ_SYMBOL} in the symbol table (not linked in, or stripped)"
        )));
    };
    let mut write_rets = Vec::new();
    let mut read_rets = Vec::new();
    // Write's RETs are not probed, but it is decoded all the same: a function that does not
    // decode cleanly is not probed at all.
    let write_entry = function(&file, &write, &mut write_rets)?;
    let read_entry = function(&file, &read, &mut read_rets)?;
    Ok(GoTlsTargets {
        go_version,
        write_entry,
        read_entry,
        read_rets,
    })
}

/// The file offset of `sym`'s entry; its RETs' offsets are appended to `rets`.
fn function<'d, R: object::ReadRef<'d>>(
    file: &object::File<'d, R>,
    sym: &object::Symbol<'d, '_, R>,
    rets: &mut Vec<u64>,
) -> Result<u64, NotProbed> {
    let name = sym.name().unwrap_or("?");
    let bad = |why: &str| NotProbed::Unsupported(format!("{name}: {why}"));
    let section = sym
        .section_index()
        .and_then(|i| file.section_by_index(i).ok())
        .ok_or_else(|| bad("no section"))?;
    let (sec_off, sec_len) = section
        .file_range()
        .ok_or_else(|| bad("section not in the file"))?;
    let start = sym
        .address()
        .checked_sub(section.address())
        .filter(|s| s.saturating_add(sym.size()) <= sec_len && sym.size() > 0)
        .ok_or_else(|| bad("outside its section"))?;
    let code = section.data().map_err(|e| bad(&e.to_string()))?;
    let body = usize::try_from(start)
        .ok()
        .and_then(|s| code.get(s..s + usize::try_from(sym.size()).ok()?))
        .ok_or_else(|| bad("outside its section"))?;
    let before = rets.len();
    for off in ret_offsets(body).map_err(|e| bad(&e))? {
        rets.push(sec_off + start + off);
    }
    if rets.len() == before {
        return Err(bad("no RET instruction"));
    }
    Ok(sec_off + start)
}

/// Offsets of the RET instructions in the machine code of one function, decoded from its
/// first byte (Go keeps no data in its text: a linear decode finds every instruction).
pub fn ret_offsets(code: &[u8]) -> Result<Vec<u64>, String> {
    let mut decoder = iced_x86::Decoder::new(64, code, iced_x86::DecoderOptions::NONE);
    let mut out = Vec::new();
    let mut ins = iced_x86::Instruction::default();
    while decoder.can_decode() {
        let at = decoder.position() as u64;
        decoder.decode_out(&mut ins);
        if ins.is_invalid() {
            return Err(format!("undecodable instruction at +{at:#x}"));
        }
        if ins.mnemonic() == iced_x86::Mnemonic::Ret {
            if out.len() == MAX_RETS {
                return Err(format!("more than {MAX_RETS} RET instructions"));
            }
            out.push(at);
        }
    }
    Ok(out)
}

/// The Go version in a `.go.buildinfo` section written inline (Go 1.18+): a 32-byte header
/// ("\xff Go buildinf:", pointer size, flags with bit 2 set, padding), then the version as a
/// varint-prefixed string.
fn go_version(info: &[u8]) -> Option<String> {
    let header = info.get(..32)?;
    if &header[..14] != b"\xff Go buildinf:" || header[15] & 2 == 0 {
        return None;
    }
    let (len, used) = uvarint(info.get(32..)?)?;
    let at = 32 + used;
    let bytes = info.get(at..at.checked_add(usize::try_from(len).ok()?)?)?;
    String::from_utf8(bytes.to_vec()).ok()
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rets_are_found_at_instruction_boundaries_only() {
        // mov eax, 0xc3c3c3c3 (the bytes of RET inside an immediate); ret; xor eax, eax; ret
        let code = [0xb8, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0x31, 0xc0, 0xc3];
        assert_eq!(ret_offsets(&code).unwrap(), vec![5, 8]);
        // ret imm16 is a RET too.
        assert_eq!(ret_offsets(&[0xc2, 0x08, 0x00]).unwrap(), vec![0]);
        // A truncated instruction is refused, not guessed at.
        assert!(ret_offsets(&[0x48, 0x8b]).is_err());
    }

    #[test]
    fn build_info_versions() {
        // Laid out as Go's debug/buildinfo reads it.
        let mut info = b"\xff Go buildinf:\x08\x02".to_vec();
        info.resize(32, 0);
        info.push(8);
        info.extend_from_slice(b"go1.19.8");
        assert_eq!(go_version(&info).as_deref(), Some("go1.19.8"));
        // The pre-1.18 layout (pointers, no inline strings), cut or bad data give nothing.
        info[15] = 0;
        assert_eq!(go_version(&info), None);
        info[15] = 2;
        info.truncate(36);
        assert_eq!(go_version(&info), None);
        assert_eq!(go_version(b"short"), None);
    }

    #[test]
    fn a_rust_binary_is_not_go() {
        let me = std::env::current_exe().unwrap();
        assert!(matches!(targets_of_file(&me), Err(NotProbed::NotGoTls(_))));
    }
}
