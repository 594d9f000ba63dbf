//! Hand-made archives: one per error, and the format's corner cases.

mod common;

use common::*;
use exo_initrd::*;

fn err(bytes: &[u8]) -> InitrdError {
    let e = Archive::parse(bytes).unwrap_err();
    // The lazy walk reports the same error.
    let walk_err = exo_initrd::entries(bytes).find_map(Result::err).unwrap();
    assert_eq!(e, walk_err);
    let s = e.to_string();
    assert!(!s.is_empty() && !s.contains('\n'));
    e
}

#[test]
fn minimal_archives() {
    let only_trailer = archive(&[]);
    let a = Archive::parse(&only_trailer).unwrap();
    assert!(a.is_empty());
    assert_eq!(a.entries().count(), 0);
    assert_eq!(a.end(), 110 + 11);
    // The trailer's own padding may be missing: nothing follows it.
    assert!(Archive::parse(&only_trailer[..121]).is_ok());
    assert_eq!(
        err(&only_trailer[..120]),
        InitrdError::TruncatedName {
            offset: 0,
            namesize: 11
        }
    );
}

#[test]
fn empty_input_is_missing_trailer() {
    assert_eq!(err(b""), InitrdError::MissingTrailer { offset: 0 });
}

#[test]
fn missing_trailer_on_entry_boundary() {
    let bytes = write(&[RawEntry::file("init", b"abcd")]);
    assert_eq!(bytes.len(), 120);
    assert_eq!(err(&bytes), InitrdError::MissingTrailer { offset: 120 });
    // The entry itself is readable before the error.
    let mut walk = exo_initrd::entries(&bytes);
    assert_eq!(walk.next().unwrap().unwrap().data, b"abcd");
    assert!(walk.next().unwrap().is_err());
    assert!(walk.next().is_none());
    assert!(walk.trailer_end().is_none());
}

/// An archive cut inside the last entry's data padding: the next header is missing, at an
/// offset past the input. Until 2026-12-05 this was a missing trailer "at 0x78" of 119 bytes.
#[test]
fn cut_inside_the_last_padding_is_a_truncated_header() {
    let bytes = write(&[RawEntry::file("init", b"abc")]);
    assert_eq!(bytes.len(), 120);
    assert_eq!(
        err(&bytes[..119]),
        InitrdError::TruncatedHeader {
            offset: 120,
            available: 0
        }
    );
}

#[test]
fn bad_magic() {
    for magic in [b"070707", b"070700", b"\0\0\0\0\0\0", b"07070A"] {
        let mut e = RawEntry::file("init", b"x");
        e.magic = *magic;
        assert_eq!(
            err(&archive(&[e])),
            InitrdError::BadMagic {
                offset: 0,
                found: *magic
            }
        );
    }
    // In the second entry: the offset says where.
    let mut bad = RawEntry::file("b", b"");
    bad.magic = *b"070707";
    let bytes = archive(&[RawEntry::file("a", b"12345"), bad]);
    assert_eq!(
        err(&bytes),
        InitrdError::BadMagic {
            offset: 120,
            found: *b"070707"
        }
    );
    // Zero padding where a header should be (cpio's block padding without a trailer).
    let mut bytes = write(&[RawEntry::file("a", b"")]);
    bytes.extend_from_slice(&[0; 512]);
    assert!(matches!(
        err(&bytes),
        InitrdError::BadMagic { offset: 112, .. }
    ));
    assert!(err(&bytes).to_string().contains("\\x00"));
}

#[test]
fn bad_hex_in_every_field() {
    let names = [
        "ino",
        "mode",
        "uid",
        "gid",
        "nlink",
        "mtime",
        "filesize",
        "devmajor",
        "devminor",
        "rdevmajor",
        "rdevminor",
        "namesize",
        "check",
    ];
    for (i, field) in names.into_iter().enumerate() {
        for junk in [b'g', b' ', b'+', b'-', b'x', 0, 0xff] {
            for pos in [0, 7] {
                let mut bytes = archive(&[RawEntry::file("init", b"x")]);
                bytes[6 + 8 * i + pos] = junk;
                assert_eq!(
                    err(&bytes),
                    InitrdError::BadHex { offset: 0, field },
                    "{field} {junk:#x} at {pos}"
                );
            }
        }
    }
}

#[test]
fn lowercase_hex_is_accepted() {
    let mut bytes = archive(&[RawEntry {
        mode: 0o100_755,
        ..RawEntry::file("init", &[7; 0x1c])
    }]);
    let header = String::from_utf8(bytes[..110].to_vec()).unwrap();
    let lower = header.to_ascii_lowercase();
    assert_ne!(header, lower);
    bytes[..110].copy_from_slice(lower.as_bytes());
    let a = Archive::parse(&bytes).unwrap();
    let e = a.find("init").unwrap();
    assert_eq!((e.mode, e.size()), (0o100_755, 0x1c));
}

#[test]
fn truncated_header() {
    let bytes = archive(&[RawEntry::file("init", b"x")]);
    for len in 1..110 {
        assert_eq!(
            err(&bytes[..len]),
            InitrdError::TruncatedHeader {
                offset: 0,
                available: len
            }
        );
    }
}

#[test]
fn truncated_name_and_data() {
    let mut e = RawEntry::file("init", b"data");
    e.namesize = Some(0xFFFF_FFFF);
    assert_eq!(
        err(&archive(&[e])),
        InitrdError::TruncatedName {
            offset: 0,
            namesize: 0xFFFF_FFFF
        }
    );
    let mut e = RawEntry::file("init", b"data");
    e.filesize = Some(0xFFFF_FFFF);
    assert_eq!(
        err(&archive(&[e])),
        InitrdError::TruncatedData {
            offset: 0,
            filesize: 0xFFFF_FFFF
        }
    );
    // A file size one too large reads into the next header: still consistent, then the
    // following "header" is misaligned garbage.
    let mut e = RawEntry::file("init", b"data");
    e.filesize = Some(5);
    assert!(matches!(
        err(&archive(&[e])),
        InitrdError::BadMagic { offset: 124, .. }
    ));
    // Data cut in the middle.
    let bytes = archive(&[RawEntry::file("init", &[1; 100])]);
    assert_eq!(
        err(&bytes[..150]),
        InitrdError::TruncatedData {
            offset: 0,
            filesize: 100
        }
    );
}

#[test]
fn missing_nul() {
    // namesize 0: no room for the NUL.
    let mut e = RawEntry::file("init", b"");
    e.namesize = Some(0);
    assert_eq!(err(&archive(&[e])), InitrdError::MissingNul { offset: 0 });
    // namesize one short: the last byte of the name is 't', not NUL.
    let mut e = RawEntry::file("init", b"");
    e.namesize = Some(4);
    assert_eq!(err(&archive(&[e])), InitrdError::MissingNul { offset: 0 });
    // An embedded NUL.
    let e = RawEntry {
        name: b"in\0it".to_vec(),
        ..RawEntry::file("", b"")
    };
    assert_eq!(err(&archive(&[e])), InitrdError::MissingNul { offset: 0 });
    // Empty name (just the NUL) is accepted: it normalises to the root.
    let a_bytes = archive(&[RawEntry::dir("")]);
    let a = Archive::parse(&a_bytes).unwrap();
    assert_eq!(a.find("/").unwrap().raw_name, "");
}

#[test]
fn name_not_utf8() {
    let e = RawEntry {
        name: b"in\xffit".to_vec(),
        ..RawEntry::file("", b"")
    };
    assert_eq!(err(&archive(&[e])), InitrdError::NameNotUtf8 { offset: 0 });
}

#[test]
fn checksum() {
    let good = RawEntry::file("init", b"\xff\xff\x01").crc();
    let a = archive(std::slice::from_ref(&good));
    assert_eq!(
        Archive::parse(&a).unwrap().find("init").unwrap().data,
        b"\xff\xff\x01"
    );
    let mut bad = good.clone();
    bad.check = Some(0);
    assert_eq!(
        err(&archive(&[bad])),
        InitrdError::BadChecksum {
            offset: 0,
            expected: 0,
            computed: 0x1ff
        }
    );
    // The check field of a 070701 entry is ignored.
    let mut plain = RawEntry::file("init", b"abc");
    plain.check = Some(0xdead_beef);
    assert!(Archive::parse(&archive(&[plain])).is_ok());
    // ... and so is a 070702 symlink's or directory's (cpio writes 0 for them).
    let mut link = RawEntry::file("sh", b"busybox").crc();
    link.mode = 0o120_777;
    link.check = Some(0);
    let mut dir = RawEntry::dir("etc").crc();
    dir.check = Some(1);
    // Mixed magics in one archive.
    let bytes = archive(&[link, dir, RawEntry::file("x", b"y")]);
    let a = Archive::parse(&bytes).unwrap();
    assert_eq!(a.find("sh").unwrap().symlink_target(), Some("busybox"));
    assert_eq!(a.len(), 3);
}

#[test]
fn names_are_normalised() {
    let bytes = archive(&[
        RawEntry::dir("."),
        RawEntry::file("./init", b"1"),
        RawEntry::file("/bin/sh", b"2"),
        RawEntry::file(".//./etc/x", b"3"),
        RawEntry::file("a/./b", b"4"),
    ]);
    let a = Archive::parse(&bytes).unwrap();
    let names: Vec<_> = a.entries().map(|e| (e.raw_name, e.name)).collect();
    assert_eq!(
        names,
        [
            (".", ""),
            ("./init", "init"),
            ("/bin/sh", "bin/sh"),
            (".//./etc/x", "etc/x"),
            ("a/./b", "a/./b")
        ]
    );
    assert_eq!(a.find("/init").unwrap().data, b"1");
    assert_eq!(a.find("bin/sh").unwrap().data, b"2");
    assert_eq!(a.find("./etc/x").unwrap().data, b"3");
    assert_eq!(a.find("a/./b").unwrap().data, b"4");
    assert!(a.find("a/b").is_none());
    assert_eq!(normalize("/."), "");
    assert_eq!(normalize(".."), "..");
    assert_eq!(normalize("../x"), "../x");
    assert_eq!(normalize(".hidden"), ".hidden");
    assert_eq!(normalize("///"), "");
}

#[test]
fn duplicates_last_one_wins_and_hard_links() {
    let link = |name: &str, data: &[u8]| RawEntry {
        ino: 42,
        nlink: 2,
        mode: 0o100_755,
        ..RawEntry::file(name, data)
    };
    let bytes = archive(&[
        RawEntry::file("init", b"old"),
        link("a", b""),
        RawEntry::file("init", b"new"),
        link("b", b"shared"),
        // Same inode number but another type: not a link target.
        RawEntry {
            ino: 42,
            mode: 0o120_777,
            ..RawEntry::file("c", b"zzz")
        },
    ]);
    let a = Archive::parse(&bytes).unwrap();
    assert_eq!(a.find("/init").unwrap().data, b"new");
    assert_eq!(a.find("/a").unwrap().data, b"shared");
    assert_eq!(a.find("/a").unwrap().name, "a");
    assert_eq!(a.find("/b").unwrap().data, b"shared");
    // A lone empty file with nlink > 1 and no other link stays empty.
    let bytes = archive(&[link("x", b"")]);
    assert_eq!(Archive::parse(&bytes).unwrap().find("x").unwrap().data, b"");
}

#[test]
fn file_types() {
    for (mode, ty) in [
        (0o100_644, FileType::Regular),
        (0o040_755, FileType::Directory),
        (0o120_777, FileType::Symlink),
        (0o020_600, FileType::Other(0o020_000)),
        (0o060_600, FileType::Other(0o060_000)),
        (0o010_600, FileType::Other(0o010_000)),
        (0o140_600, FileType::Other(0o140_000)),
        (0o000_644, FileType::Other(0)),
        (0xFFFF_FFFF, FileType::Other(0o170_000)),
    ] {
        assert_eq!(FileType::from_mode(mode), ty, "{mode:o}");
    }
    let e = RawEntry {
        mode: 0o104_755,
        ..RawEntry::file("su", b"")
    };
    let bytes = archive(&[e]);
    assert_eq!(
        Archive::parse(&bytes)
            .unwrap()
            .find("su")
            .unwrap()
            .permissions(),
        0o4755
    );
}

#[test]
fn bytes_after_trailer_are_ignored() {
    let mut bytes = archive(&[RawEntry::file("init", b"1")]);
    let end = Archive::parse(&bytes).unwrap().end();
    bytes.extend_from_slice(b"garbage that is not a header");
    // A second, concatenated archive is not read either.
    bytes.extend_from_slice(&archive(&[RawEntry::file("other", b"2")]));
    let a = Archive::parse(&bytes).unwrap();
    assert_eq!(a.end(), end);
    assert_eq!(a.len(), 1);
    assert!(a.find("other").is_none());
    let mut walk = exo_initrd::entries(&bytes);
    assert!(walk.by_ref().all(|e| e.is_ok()));
    assert_eq!(walk.trailer_end(), Some(end));
}

#[test]
fn five_thousand_empty_entries_all_parse_and_the_last_is_found() {
    // Many empty files: every entry is kept, and the last one is found, its header at a
    // 4-byte-aligned offset (each header and name is padded to 4 bytes).
    let entries: Vec<_> = (0..5000)
        .map(|i| RawEntry::file(&format!("f{i}"), b""))
        .collect();
    let bytes = archive(&entries);
    let a = Archive::parse(&bytes).unwrap();
    assert_eq!(a.len(), 5000);
    assert_eq!(a.find("f4999").unwrap().offset % 4, 0);
}
