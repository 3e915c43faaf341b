//! What a path must be before `dlopen` may be given it.

use std::fs::{File, Metadata};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Refuses what `dlopen` must not be given: anything but a regular file
/// (after symlinks), which it would open and read (a FIFO with no writer
/// blocks it forever, a device may do anything), and an ELF file that the
/// dynamic loader would map past its end: one whose program headers, or a
/// loadable or dynamic segment, run beyond the end of the file (a library
/// cut short by an interrupted copy). glibc's loader does not check this;
/// it maps the segment and dies of `SIGBUS` when it touches the missing
/// pages, taking the process with it. A path that does not exist or cannot
/// be read, or a regular file that is not ELF, is left to `dlopen`, which
/// refuses it cleanly.
pub(super) fn check_file(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    // `stat` first, so that a FIFO or a device is never opened.
    if let Some(why) = std::fs::metadata(path).ok().as_ref().and_then(not_regular) {
        return Err(why);
    }
    // O_NONBLOCK: should the path have become a FIFO since, the open does
    // not wait for a writer (and the `fstat` below refuses it).
    let Ok(file) = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    else {
        return Ok(());
    };
    let Ok(meta) = file.metadata() else {
        return Ok(());
    };
    if let Some(why) = not_regular(&meta) {
        return Err(why);
    }
    check_elf(&file, meta.len())
}

/// Why a file of metadata `m` is not given to `dlopen`, if it is not a
/// regular file.
fn not_regular(m: &Metadata) -> Option<String> {
    let t = m.file_type();
    (!t.is_file()).then(|| format!("not a regular file (it is {})", file_kind(&t)))
}

/// Refuses an ELF `file` of `len` bytes whose header, program header table,
/// or a loadable or dynamic segment runs past its end; a file that is not
/// ELF passes.
fn check_elf(file: &File, len: u64) -> Result<(), String> {
    let mut ident = [0u8; 64];
    let got = file.read_at(&mut ident, 0).unwrap_or(0);
    if got < 16 || ident[..4] != *b"\x7fELF" {
        return Ok(());
    }
    let wide = ident[4] == 2; // ELFCLASS64, else ELFCLASS32
    let big = ident[5] == 2; // ELFDATA2MSB, else ELFDATA2LSB
    let cut = |what: String| {
        Err(format!(
            "{what} runs past the end of the file ({len} bytes): a truncated library"
        ))
    };
    let header = if wide { 64 } else { 52 };
    if (got as u64) < header {
        return cut("the ELF header".into());
    }
    let uint = |b: &[u8]| -> u64 {
        let fold = |acc: u64, &x: &u8| (acc << 8) | u64::from(x);
        if big {
            b.iter().fold(0, fold)
        } else {
            b.iter().rev().fold(0, fold)
        }
    };
    // e_phoff, e_phentsize, e_phnum.
    let (phoff, phentsize, phnum) = if wide {
        (uint(&ident[32..40]), uint(&ident[54..56]), uint(&ident[56..58]))
    } else {
        (uint(&ident[28..32]), uint(&ident[42..44]), uint(&ident[44..46]))
    };
    let min_entry = if wide { 56 } else { 32 };
    if phnum == 0 || phentsize < min_entry {
        return Ok(());
    }
    let table_len = phentsize * phnum;
    if phoff.checked_add(table_len).is_none_or(|end| end > len) {
        return cut("the program header table".into());
    }
    let mut table = vec![0u8; table_len as usize];
    if file.read_exact_at(&mut table, phoff).is_err() {
        return cut("the program header table".into());
    }
    for entry in table.chunks_exact(phentsize as usize) {
        // p_type, p_offset, p_filesz.
        let (kind, offset, filesz) = if wide {
            (uint(&entry[0..4]), uint(&entry[8..16]), uint(&entry[32..40]))
        } else {
            (uint(&entry[0..4]), uint(&entry[4..8]), uint(&entry[16..20]))
        };
        const PT_LOAD: u64 = 1;
        const PT_DYNAMIC: u64 = 2;
        if (kind == PT_LOAD || kind == PT_DYNAMIC) && offset.checked_add(filesz).is_none_or(|end| end > len) {
            return cut(format!("a segment at offset {offset} of {filesz} bytes"));
        }
    }
    Ok(())
}

/// What kind of file `t` is, in words, for a refusal.
fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "of an unknown kind"
    }
}
