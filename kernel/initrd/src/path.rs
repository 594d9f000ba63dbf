//! Name normalisation shared by entries and lookups.

/// Removes every leading `/` and `./` from `path`, and turns a remaining `.` into the empty
/// string (the root).
///
/// `/init`, `init`, `./init`, `.//init` and `/./init` all give `init`; `.`, `./` and `/` give
/// `""`. Nothing else is changed: `bin//sh`, `bin/./sh`, `bin/../sh` and `bin/sh/` are
/// compared as written, and `..` components are not resolved (lookups never leave the
/// archive, so they are harmless, but they only match a name stored the same way).
pub fn normalize(path: &str) -> &str {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else {
            break;
        }
    }
    if p == "." {
        // The empty tail of `path` (rather than a literal ""): the result always borrows
        // from the input.
        p.get(1..).unwrap_or(p)
    } else {
        p
    }
}
