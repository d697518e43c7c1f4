//! Just enough of ELF (64-bit, little-endian) to tell how a program would meet the
//! preload: its interpreter (none: static, the loader never runs), the libraries it
//! NEEDs with their search paths, and whether it is a Go program.

use std::path::Path;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;
/// The sections a Go toolchain puts in every binary it links (by name: the bytes they
/// hold can appear in any program's data, this one's included).
const GO_SECTIONS: [&[u8]; 2] = [b".go.buildinfo", b".note.go.buildid"];

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Elf {
    /// PT_INTERP: the dynamic loader this program asks for; `None` for a static program.
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
    /// DT_RUNPATH or DT_RPATH, as written (`$ORIGIN` unexpanded).
    pub search_paths: Vec<String>,
    pub go: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Elf(Elf),
    /// `#!interpreter [argument]`.
    Script(String),
    Other(&'static str),
}

/// Reads the file mapped, not copied: a runtime's library can be tens of MiB, of which
/// the parse touches a few pages (headers, the dynamic section, its strings).
pub fn read(path: &Path) -> std::io::Result<Kind> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len() as usize;
    if len == 0 {
        return Ok(parse(&[]));
    }
    use std::os::fd::AsRawFd;
    // SAFETY: a read-only private mapping of an open file, unmapped below; nothing else
    // holds the pointer.
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    if at == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the mapping is `len` readable bytes until the munmap below. (A file truncated
    // meanwhile would fault; this command reads installed programs, not files in flux.)
    let kind = parse(unsafe { std::slice::from_raw_parts(at.cast::<u8>(), len) });
    // SAFETY: unmaps exactly the mapping made above.
    unsafe { libc::munmap(at, len) };
    Ok(kind)
}

pub fn parse(bytes: &[u8]) -> Kind {
    if let Some(line) = bytes.strip_prefix(b"#!") {
        let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
        return Kind::Script(String::from_utf8_lossy(&line[..end]).trim().to_string());
    }
    if !bytes.starts_with(b"\x7fELF") {
        return Kind::Other("neither an ELF program nor a #! script");
    }
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Kind::Other("not a 64-bit little-endian ELF program");
    }
    match program(bytes) {
        Some(elf) => Kind::Elf(elf),
        None => Kind::Other("a truncated or malformed ELF file"),
    }
}

fn program(bytes: &[u8]) -> Option<Elf> {
    let phoff = u64_at(bytes, 32)? as usize;
    let phentsize = u16_at(bytes, 54)? as usize;
    let phnum = u16_at(bytes, 56)? as usize;
    let mut elf = Elf {
        go: section_names(bytes).any(|name| GO_SECTIONS.contains(&name)),
        ..Elf::default()
    };
    let mut loads = Vec::new();
    let mut dynamic = None;
    for i in 0..phnum {
        let header = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let kind = u32_at(bytes, header)?;
        let offset = u64_at(bytes, header + 8)? as usize;
        let vaddr = u64_at(bytes, header + 16)?;
        let size = u64_at(bytes, header + 32)? as usize;
        match kind {
            PT_INTERP => {
                let text = bytes.get(offset..offset.checked_add(size)?)?;
                let text = text.split(|&b| b == 0).next().unwrap_or(text);
                elf.interpreter = Some(String::from_utf8_lossy(text).into_owned());
            }
            PT_DYNAMIC => dynamic = Some((offset, size)),
            PT_LOAD => loads.push((vaddr, offset as u64, size as u64)),
            _ => {}
        }
    }
    if let Some((offset, size)) = dynamic {
        read_dynamic(bytes, offset, size, &loads, &mut elf)?;
    }
    Some(elf)
}

fn read_dynamic(
    bytes: &[u8],
    offset: usize,
    size: usize,
    loads: &[(u64, u64, u64)],
    elf: &mut Elf,
) -> Option<()> {
    let mut entries = Vec::new();
    let mut strtab = None;
    for at in (offset..offset.checked_add(size)?).step_by(16) {
        let (tag, value) = (u64_at(bytes, at)?, u64_at(bytes, at + 8)?);
        match tag {
            0 => break,
            DT_STRTAB => strtab = Some(value),
            DT_NEEDED | DT_RPATH | DT_RUNPATH => entries.push((tag, value)),
            _ => {}
        }
    }
    // DT_STRTAB is an address: the PT_LOAD holding it says where it is in the file.
    let strtab = strtab?;
    let (vaddr, file_offset, _) = loads
        .iter()
        .find(|(vaddr, _, size)| (*vaddr..vaddr + size).contains(&strtab))?;
    let strings = (strtab - vaddr + file_offset) as usize;
    for (tag, value) in entries {
        let text = c_string(bytes, strings.checked_add(value as usize)?)?;
        match tag {
            DT_NEEDED => elf.needed.push(text),
            _ => elf.search_paths.extend(
                text.split(':')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string),
            ),
        }
    }
    Some(())
}

/// The names of the file's sections (none when its section headers are gone).
fn section_names(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let headers = (|| {
        let shoff = u64_at(bytes, 40)? as usize;
        let shentsize = u16_at(bytes, 58)? as usize;
        let shnum = u16_at(bytes, 60)? as usize;
        let names_header = shoff.checked_add(u16_at(bytes, 62)? as usize * shentsize)?;
        let names = u64_at(bytes, names_header + 24)? as usize;
        Some((shoff, shentsize, shnum, names))
    })();
    let (shoff, shentsize, shnum, names) = headers.unwrap_or((0, 0, 0, 0));
    (0..shnum).filter_map(move |i| {
        let name = u32_at(bytes, shoff + i * shentsize)? as usize;
        let rest = bytes.get(names.checked_add(name)?..)?;
        Some(&rest[..rest.iter().position(|&b| b == 0)?])
    })
}

fn c_string(bytes: &[u8], at: usize) -> Option<String> {
    let rest = bytes.get(at..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_dynamic_and_needs_libc() {
        let me = std::env::current_exe().unwrap();
        let Kind::Elf(elf) = read(&me).unwrap() else {
            panic!("not ELF")
        };
        assert!(elf.interpreter.unwrap().contains("ld-linux"));
        assert!(
            elf.needed.iter().any(|n| n.starts_with("libc.so")),
            "{:?}",
            elf.needed
        );
        assert!(!elf.go);
    }

    #[test]
    fn scripts_and_other_files() {
        assert_eq!(
            parse(b"#!/usr/bin/env python3\nprint(1)\n"),
            Kind::Script("/usr/bin/env python3".into())
        );
        assert!(matches!(parse(b"hello"), Kind::Other(_)));
        assert!(matches!(parse(b"\x7fELF\x02\x01"), Kind::Other(_)));
    }

    #[test]
    fn go_and_static_programs() {
        // A 64-bit header with no program headers (static) and two sections: the names'
        // table and `.go.buildinfo`.
        let mut bytes = vec![0u8; 64];
        bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let names_at = bytes.len() as u64;
        bytes.extend_from_slice(b"\0.shstrtab\0.go.buildinfo\0");
        let shoff = bytes.len() as u64;
        bytes[40..48].copy_from_slice(&shoff.to_le_bytes());
        bytes[58..60].copy_from_slice(&64u16.to_le_bytes());
        bytes[60..62].copy_from_slice(&2u16.to_le_bytes());
        bytes[62..64].copy_from_slice(&0u16.to_le_bytes());
        for name in [1u32, 11] {
            let mut header = [0u8; 64];
            header[..4].copy_from_slice(&name.to_le_bytes());
            header[24..32].copy_from_slice(&names_at.to_le_bytes());
            bytes.extend_from_slice(&header);
        }
        let Kind::Elf(elf) = parse(&bytes) else {
            panic!("not ELF")
        };
        assert!(elf.go && elf.interpreter.is_none() && elf.needed.is_empty());
    }
}
