//! Helpers shared by the integration tests: a newc writer for hand-made archives, the
//! committed fixtures, and access to the real `cpio` tool.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One entry of a hand-made archive. Every field can be set to a wrong value.
#[derive(Clone, Debug)]
pub struct RawEntry {
    pub magic: [u8; 6],
    pub ino: u32,
    pub mode: u32,
    pub nlink: u32,
    pub name: Vec<u8>,
    /// `None`: name length + 1 (the NUL is written).
    pub namesize: Option<u32>,
    pub data: Vec<u8>,
    /// `None`: `data.len()`.
    pub filesize: Option<u32>,
    /// `None`: the checksum for `070702`, 0 for `070701`.
    pub check: Option<u32>,
}

impl RawEntry {
    pub fn file(name: &str, data: &[u8]) -> Self {
        Self {
            magic: *b"070701",
            ino: 0,
            mode: 0o100_644,
            nlink: 1,
            name: name.as_bytes().to_vec(),
            namesize: None,
            data: data.to_vec(),
            filesize: None,
            check: None,
        }
    }

    pub fn dir(name: &str) -> Self {
        Self {
            mode: 0o040_755,
            nlink: 2,
            ..Self::file(name, b"")
        }
    }

    pub fn trailer() -> Self {
        Self {
            mode: 0,
            ..Self::file("TRAILER!!!", b"")
        }
    }

    pub fn crc(mut self) -> Self {
        self.magic = *b"070702";
        self
    }

    pub fn header(&self) -> Vec<u8> {
        let namesize = self.namesize.unwrap_or(self.name.len() as u32 + 1);
        let filesize = self.filesize.unwrap_or(self.data.len() as u32);
        let check = self.check.unwrap_or(if &self.magic == b"070702" {
            self.data
                .iter()
                .fold(0u32, |s, &b| s.wrapping_add(b.into()))
        } else {
            0
        });
        let fields = [
            self.ino,
            self.mode,
            0,
            0,
            self.nlink,
            1_700_000_000,
            filesize,
            0,
            0,
            0,
            0,
            namesize,
            check,
        ];
        let mut h = self.magic.to_vec();
        for f in fields {
            h.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        assert_eq!(h.len(), 110);
        h
    }
}

/// Writes entries the way `cpio -H newc` does (name NUL, 4-byte padding after name and
/// data). The trailer is not added.
pub fn write(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&e.header());
        out.extend_from_slice(&e.name);
        out.push(0);
        pad4(&mut out);
        out.extend_from_slice(&e.data);
        pad4(&mut out);
    }
    out
}

/// Writes entries and the trailer.
pub fn archive(entries: &[RawEntry]) -> Vec<u8> {
    let mut all = entries.to_vec();
    all.push(RawEntry::trailer());
    write(&all)
}

pub fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn sample() -> Vec<u8> {
    std::fs::read(data_dir().join("sample.cpio")).unwrap()
}

pub fn sample_crc() -> Vec<u8> {
    std::fs::read(data_dir().join("sample-crc.cpio")).unwrap()
}

/// True if a working `cpio` is on the PATH.
pub fn have_cpio() -> bool {
    Command::new("cpio")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cpio -o -H <format>` in `dir` on the given names (one per line on stdin).
pub fn run_cpio(dir: &Path, format: &str, names: &[String]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("cpio")
        .args(["-o", "-H", format, "--quiet"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cpio");
    let mut list = String::new();
    for n in names {
        list.push_str(n);
        list.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(list.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cpio failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A fresh empty directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "exo-initrd-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// True if `inner` lies entirely inside `outer` (as memory ranges).
pub fn within(outer: &[u8], inner: &[u8]) -> bool {
    let o = outer.as_ptr_range();
    let i = inner.as_ptr_range();
    o.start <= i.start && i.end <= o.end
}
