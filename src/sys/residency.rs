//! What a diverting process keeps resident of this library.
//!
//! The kernel maps a file's pages in 64 KiB windows around each page a process touches
//! ("fault-around"), clipped to the mapping (VMA) the page is in. build.rs lays the
//! segment out as the loader's tables and the hot code's read-only data (`crate::hot_data`
//! among it), then http's code, https's, the rest, and from a page of its own the cold
//! read-only data (the unwind tables, then the other literals); but one VMA spans the
//! whole segment (code and read-only data: `--no-rosegment`, one mapping fewer at every
//! process start), so a window at the edge of http's code maps 60 KiB of https's or of
//! cold code with it. Two `madvise` calls (at the
//! set-up of a process that names a proxy: once, never at load) give https's code and the
//! cold data a flag each, different from their neighbours' (a flag that changes only
//! read-ahead): the kernel then keeps them in VMAs of their own, which no window crosses;
//! a third, once the set-up is done, unmaps the cold data mapped until then. Measured by
//! `make bench` (the library's Rss after Python's requests) and checked by
//! tests/e2e/test_residency.py.

use std::sync::atomic::{AtomicBool, Ordering};

/// Placed by build.rs's layout script right after the code http runs. The markers are
/// named by their sections, not exported (rustc exports every `no_mangle` item of a
/// cdylib, and each dynamic symbol costs every process a look at it); they return
/// different values, as identical functions would be merged into one.
#[link_section = ".text.lunar_layout_http_end"]
#[inline(never)]
extern "C" fn http_code_end() -> u32 {
    1
}

/// Placed right after the code https runs.
#[link_section = ".text.lunar_layout_hot_end"]
#[inline(never)]
extern "C" fn hot_code_end() -> u32 {
    2
}

/// Placed after all the code (a section name outside `.text.*`, which the layout's
/// catch-all statement would take first).
#[link_section = ".lunar_layout_code_end"]
#[inline(never)]
extern "C" fn code_end() -> u32 {
    3
}

/// Placed first in the cold read-only data (before the unwind tables), which starts on a
/// page of its own after all the code.
#[link_section = ".rodata.lunar_layout_cold_rodata_start"]
#[used]
static COLD_RODATA_START: u8 = 0;

extern "C" {
    /// The ELF header of the object this code is linked into (defined by the linker).
    static __ehdr_start: libc::Elf64_Ehdr;
}

static FENCED: AtomicBool = AtomicBool::new(false);

/// x86_64 Linux pages.
const PAGE: usize = 4096;

/// In a process that names a proxy (one that will divert), the hot code is fenced off
/// from the rest before any code that would map the rest runs: at the first hook with work
/// (`guard`), before that work, and at the set-up (`runtime`). build.rs places the callers
/// and the fence before the code they would map. libc's getenv, not std's reader, whose
/// code lies at the far end of the hot code.
#[inline]
pub fn fence_if_diverting() {
    // SAFETY: a NUL-terminated name; only whether it is set is read.
    if !unsafe { libc::getenv(c"LUNAR_PROXY_HOST".as_ptr()) }.is_null() {
        fence_hot_code();
    }
}

/// Separates the hot parts of the library's mappings from the rest (see the module
/// comment). Once per process; a failure (a kernel refusing more VMAs) changes nothing
/// but memory.
pub fn fence_hot_code() {
    if FENCED.swap(true, Ordering::Relaxed) {
        return;
    }
    let http_end = page_up(http_code_end as extern "C" fn() -> u32 as usize);
    let hot_end = page_up(hot_code_end as extern "C" fn() -> u32 as usize);
    // Each range lies inside one of this library's segments, or is skipped: never a flag
    // on a mapping that is not ours (a build without the layout script places the markers
    // anywhere, a linker may put read-only data beside the code).
    if let Some(text) = segment_of(http_end) {
        if http_end < hot_end && hot_end <= text.end {
            advise(http_end, hot_end, libc::MADV_RANDOM);
        }
    }
    if let Some((cold, end)) = cold_data() {
        advise(cold, end, libc::MADV_RANDOM);
    }
}

/// Unmaps the cold read-only data, once the set-up is done: windows mapped before the
/// fence (the program's start, its imports) or by the set-up (the configuration's names
/// and messages) may reach into it. Read-only data is never written (no debugger
/// breakpoint lives there), so this only drops pages the kernel maps back from the page
/// cache when read. The code is not unmapped: a breakpoint or uprobe in it would be lost.
/// After the fence only.
pub fn drop_cold_data() {
    if !FENCED.load(Ordering::Relaxed) {
        return;
    }
    if let Some((cold, end)) = cold_data() {
        advise(cold, end, libc::MADV_DONTNEED);
    }
}

/// The cold read-only data: where it starts (the page after all the code) and the end of
/// its segment. The segment is the code's too, but all the code lies before the cold
/// data: checked, never a page of code flagged as data or unmapped.
fn cold_data() -> Option<(usize, usize)> {
    let code_end = code_end as extern "C" fn() -> u32 as usize;
    let cold = std::ptr::addr_of!(COLD_RODATA_START) as usize & !(PAGE - 1);
    let segment = segment_of(cold)?;
    let ordered = code_end < cold && cold < segment.end;
    (segment.flags & libc::PF_W == 0 && ordered).then_some((cold, segment.end))
}

fn page_up(address: usize) -> usize {
    (address + PAGE - 1) & !(PAGE - 1)
}

/// `MADV_RANDOM` changes read-ahead only, and `MADV_DONTNEED` of read-only file pages only
/// unmaps them: never contents or protection.
fn advise(start: usize, end: usize, advice: libc::c_int) {
    // SAFETY: a page-aligned range inside a read-only segment of this library.
    let _ = unsafe { super::madvise(start as *mut libc::c_void, end - start, advice) };
}

/// One of this library's loadable segments, as mapped: where it ends (page-aligned) and
/// its permissions (`PF_*`).
struct Segment {
    end: usize,
    flags: u32,
}

/// The segment of this library that holds `address`, from its own program headers
/// (mapped with the ELF header, which every process has read).
fn segment_of(address: usize) -> Option<Segment> {
    // SAFETY: the linker defines __ehdr_start at our mapped ELF header; its program
    // headers follow it at e_phoff inside the same mapped first page(s).
    let (base, headers) = unsafe {
        let header = &*std::ptr::addr_of!(__ehdr_start);
        let first = (header as *const libc::Elf64_Ehdr as *const u8).add(header.e_phoff as usize);
        (
            header as *const libc::Elf64_Ehdr as usize,
            std::slice::from_raw_parts(first.cast::<libc::Elf64_Phdr>(), header.e_phnum.into()),
        )
    };
    let loads = || headers.iter().filter(|h| h.p_type == libc::PT_LOAD);
    // The object's load bias: where the segment at file offset 0 (the ELF header's) sits.
    let bias = base - loads().find(|h| h.p_offset == 0)?.p_vaddr as usize;
    loads()
        .find(|h| {
            let start = bias + h.p_vaddr as usize;
            start <= address && address < start + h.p_memsz as usize
        })
        .map(|h| Segment {
            end: page_up(bias + (h.p_vaddr + h.p_memsz) as usize),
            flags: h.p_flags,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_segment_of_its_own_code_and_nothing_outside() {
        let code = fence_hot_code as fn() as usize;
        let text = segment_of(code).expect("our code is in a loadable segment");
        assert!(text.end > code);
        assert_eq!(text.flags, libc::PF_R | libc::PF_X);
        let data = segment_of(std::ptr::addr_of!(COLD_RODATA_START) as usize)
            .expect("read-only data is in a loadable segment");
        assert_eq!(data.flags & libc::PF_W, 0);
        assert!(segment_of(0x1000).is_none());
    }
}
