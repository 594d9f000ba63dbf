//! The committed archives written by GNU cpio (`tests/data/make-fixtures.sh`): every entry,
//! type, size and content, and the lookups the kernel will make.

mod common;

use common::*;
use exo_initrd::*;

/// The tree of `make-fixtures.sh`, in the order `cpio` writes it (it defers the data of
/// hard links to the last link it sees, so `init` comes after `bin/init-link`).
const SAMPLE: &[(&str, FileType, u32, &[u8])] = &[
    ("", FileType::Directory, 0o755, b""),
    ("bin", FileType::Directory, 0o755, b""),
    ("bin/hello", FileType::Regular, 0o755, b"hello"),
    ("bin/sh", FileType::Symlink, 0o777, b"hello"),
    ("etc", FileType::Directory, 0o755, b""),
    ("etc/empty", FileType::Regular, 0o644, b""),
    ("etc/motd", FileType::Regular, 0o644, b"motd"),
    ("bin/init-link", FileType::Regular, 0o755, b""),
    (
        "init",
        FileType::Regular,
        0o755,
        b"\x7fELF-not-really: exo init\n",
    ),
    ("odd", FileType::Directory, 0o755, b""),
    ("odd/a", FileType::Regular, 0o644, b"x"),
    ("odd/ab", FileType::Regular, 0o644, b"xy"),
    ("odd/abc", FileType::Regular, 0o644, b"xyz"),
    (
        "odd/données.txt",
        FileType::Regular,
        0o644,
        "données\n".as_bytes(),
    ),
    ("odd/fifo", FileType::Other(0o010_000), 0o600, b""),
];

fn check_sample(bytes: &[u8]) {
    let archive = Archive::parse(bytes).unwrap();
    assert_eq!(archive.len(), SAMPLE.len());
    assert!(!archive.is_empty());
    assert!(archive.end() <= bytes.len());
    assert_eq!(&bytes[archive.end() - 11..archive.end()], b"TRAILER!!!\0");
    // The rest is the zero padding cpio adds up to a 512-byte block.
    assert!(bytes[archive.end()..].iter().all(|&b| b == 0));
    assert_eq!(bytes.len() % 512, 0);

    let entries: Vec<_> = archive.entries().collect();
    let lazy: Vec<_> = exo_initrd::entries(bytes).map(Result::unwrap).collect();
    assert_eq!(entries, lazy);
    for (e, &(name, ty, perm, data)) in entries.iter().zip(SAMPLE) {
        assert_eq!(e.name, name);
        // GNU cpio stores names without "./"; the root is ".".
        assert_eq!(e.raw_name, if name.is_empty() { "." } else { name });
        assert_eq!(e.file_type(), ty, "{name}");
        assert_eq!(e.permissions(), perm, "{name}");
        assert_eq!(e.data, data, "{name}");
        assert_eq!(e.size(), data.len());
        assert_eq!(e.mtime, 1_700_000_000);
        assert_eq!((e.uid, e.gid), (0, 0));
        assert_eq!(e.offset % 4, 0);
        assert!(within(bytes, e.data));
    }
    let by = |n: &str| entries.iter().find(|e| e.name == n).unwrap();
    assert_eq!(by("init").nlink, 2);
    assert_eq!(by("init").ino, by("bin/init-link").ino);
    assert_eq!(by("bin/sh").symlink_target(), Some("hello"));
    assert_eq!(by("bin/hello").symlink_target(), None);
    assert_eq!(by("odd/données.txt").size(), 9);
}

#[test]
fn newc_fixture() {
    let bytes = sample();
    assert_eq!(&bytes[..6], MAGIC_NEWC);
    check_sample(&bytes);
}

#[test]
fn crc_fixture() {
    let bytes = sample_crc();
    assert_eq!(&bytes[..6], MAGIC_CRC);
    check_sample(&bytes);
}

#[test]
fn find_accepts_all_spellings() {
    let bytes = sample();
    let archive = Archive::parse(&bytes).unwrap();
    for path in ["/init", "init", "./init", "//init", "/./init", ".//./init"] {
        let e = archive.find(path).unwrap_or_else(|| panic!("{path}"));
        assert_eq!(e.name, "init");
        assert_eq!(e.data, b"\x7fELF-not-really: exo init\n");
    }
    for path in ["/", ".", "./", ""] {
        assert_eq!(archive.find(path).unwrap().file_type(), FileType::Directory);
    }
    assert_eq!(archive.find("/bin/hello").unwrap().data, b"hello");
    assert_eq!(archive.find("/odd/données.txt").unwrap().size(), 9);
    for missing in [
        "/nope",
        "bin/",
        "bin//hello",
        "Init",
        "init\0",
        "/bin/../init",
        "TRAILER!!!",
    ] {
        assert!(archive.find(missing).is_none(), "{missing:?}");
    }
}

#[test]
fn find_resolves_hard_links_and_not_symlinks() {
    let bytes = sample();
    let archive = Archive::parse(&bytes).unwrap();
    let link = archive.find("/bin/init-link").unwrap();
    assert_eq!(link.name, "bin/init-link");
    assert_eq!(link.file_type(), FileType::Regular);
    assert_eq!(link.data, b"\x7fELF-not-really: exo init\n");
    assert!(within(&bytes, link.data));
    let sh = archive.find("/bin/sh").unwrap();
    assert_eq!(sh.file_type(), FileType::Symlink);
    assert_eq!(sh.data, b"hello");
    // An empty regular file with one link stays empty.
    assert_eq!(archive.find("/etc/empty").unwrap().data, b"");
}

#[test]
fn crc_fixture_detects_a_flipped_data_byte() {
    let mut bytes = sample_crc();
    // bin/hello's data follows its name, which ends 4-aligned (the symlink's target comes later).
    let pos = bytes.windows(10).position(|w| w == b"bin/hello\0").unwrap() + 10;
    assert_eq!(&bytes[pos..pos + 5], b"hello");
    bytes[pos] = b'j';
    let err = Archive::parse(&bytes).unwrap_err();
    let InitrdError::BadChecksum {
        expected, computed, ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(computed.wrapping_sub(expected), u32::from(b'j' - b'h'));
    // The same edit in the plain newc archive goes unnoticed: it has no checksum.
    let mut plain = sample();
    let pos = plain.windows(10).position(|w| w == b"bin/hello\0").unwrap() + 10;
    plain[pos] = b'j';
    assert_eq!(
        Archive::parse(&plain)
            .unwrap()
            .find("bin/hello")
            .unwrap()
            .data,
        b"jello"
    );
}

#[test]
fn every_truncation_is_an_error() {
    for bytes in [sample(), sample_crc()] {
        let end = Archive::parse(&bytes).unwrap().end();
        for len in 0..bytes.len() {
            let cut = &bytes[..len];
            let res = Archive::parse(cut);
            if len < end {
                assert!(res.is_err(), "truncated to {len} bytes was accepted");
                // The lazy walk reports the error too, after the complete entries.
                let walk: Vec<_> = exo_initrd::entries(cut).collect();
                assert!(walk.last().unwrap().is_err());
                assert!(walk[..walk.len() - 1].iter().all(Result::is_ok));
            } else {
                assert_eq!(res.unwrap().len(), SAMPLE.len());
            }
        }
    }
}

#[test]
fn errors_display_on_one_line() {
    let bytes = sample();
    for len in [0, 50, 113, 200] {
        let e = Archive::parse(&bytes[..len]).unwrap_err();
        let s = e.to_string();
        assert!(!s.is_empty() && !s.contains('\n'), "{s}");
    }
}
