//! `docs/syscalls.md` and the code say the same thing: its table lists exactly the calls of
//! `SYSCALLS`, in order, with the same numbers, names, arguments, results and errors, and
//! its constants paragraph has the values of the constants.

use exo_abi::*;

/// One row of the table: number, name, arguments, result, errors, semantics.
#[derive(Debug)]
struct Row {
    number: usize,
    name: String,
    args: Vec<String>,
    returns: String,
    errors: Vec<String>,
    semantics: String,
}

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/syscalls.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The cells of a table line (`|` inside a cell must be escaped as `\|`).
fn cells(line: &str) -> Vec<String> {
    let inner = line
        .trim()
        .strip_prefix('|')
        .and_then(|l| l.strip_suffix('|'));
    let inner = inner.unwrap_or_else(|| panic!("not a table row: {line}"));
    let mut out = vec![String::new()];
    let mut prev = ' ';
    for c in inner.chars() {
        if c == '|' && prev != '\\' {
            out.push(String::new());
        } else {
            out.last_mut().unwrap().push(c);
        }
        prev = c;
    }
    out.into_iter()
        .map(|c| c.replace('`', "").trim().to_string())
        .collect()
}

/// `a, b, c` as a list; `—` (or nothing) is the empty list.
fn list(cell: &str) -> Vec<String> {
    if cell.is_empty() || cell == "—" {
        return vec![];
    }
    cell.split(',').map(|s| s.trim().to_string()).collect()
}

/// The rows of the table whose header starts with `| Nr |`.
fn table(doc: &str) -> Vec<Row> {
    let mut lines = doc.lines().skip_while(|l| !l.starts_with("| Nr |"));
    let header = cells(
        lines
            .next()
            .expect("docs/syscalls.md has no `| Nr |` table"),
    );
    assert_eq!(
        header,
        [
            "Nr",
            "Name",
            "Arguments",
            "Returns",
            "Errors",
            "Exo-OS semantics (subset of Linux)"
        ]
    );
    assert!(lines.next().unwrap().starts_with("|----"), "separator line");
    lines
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let c = cells(l);
            assert_eq!(c.len(), 6, "six cells: {l}");
            Row {
                number: c[0].parse().unwrap_or_else(|_| panic!("bad number: {l}")),
                name: c[1].clone(),
                args: list(&c[2]),
                returns: c[3].clone(),
                errors: list(&c[4]),
                semantics: c[5].clone(),
            }
        })
        .collect()
}

#[test]
fn the_doc_table_is_syscalls() {
    let rows = table(&doc());
    let doc_names: Vec<_> = rows.iter().map(|r| (r.number, r.name.as_str())).collect();
    let code_names: Vec<_> = SYSCALLS.iter().map(|s| (s.number, s.name)).collect();
    assert_eq!(
        doc_names, code_names,
        "docs/syscalls.md and SYSCALLS list different calls"
    );
    for (row, info) in rows.iter().zip(SYSCALLS) {
        assert_eq!(row.args, info.args, "{}: arguments", info.name);
        assert_eq!(row.returns, info.returns, "{}: result", info.name);
        let code_errors: Vec<_> = info.errors.iter().map(|e| e.name()).collect();
        assert_eq!(row.errors, code_errors, "{}: errors", info.name);
        for e in &row.errors {
            assert!(
                Errno::from_name(e).is_some(),
                "{}: unknown errno {e}",
                info.name
            );
        }
        assert!(
            row.semantics.len() > 20,
            "{}: say what the call does",
            info.name
        );
    }
}

#[test]
fn the_doc_gives_the_constants_their_values() {
    let doc = doc().split_whitespace().collect::<Vec<_>>().join(" ");
    let decimal = [
        ("PROT_NONE", PROT_NONE),
        ("PROT_READ", PROT_READ),
        ("PROT_WRITE", PROT_WRITE),
        ("PROT_EXEC", PROT_EXEC),
        ("FUTEX_WAIT", FUTEX_WAIT),
        ("FUTEX_WAKE", FUTEX_WAKE),
        ("FUTEX_PRIVATE_FLAG", FUTEX_PRIVATE_FLAG),
        ("CLOCK_REALTIME", CLOCK_REALTIME),
        ("CLOCK_MONOTONIC", CLOCK_MONOTONIC),
    ];
    for (name, v) in decimal {
        let s = format!("`{name}` {v}");
        assert!(doc.contains(&s), "docs/syscalls.md lacks {s:?}");
    }
    for (name, v) in [
        ("MAP_PRIVATE", MAP_PRIVATE),
        ("MAP_FIXED", MAP_FIXED),
        ("MAP_ANONYMOUS", MAP_ANONYMOUS),
        ("MAP_LAZY", MAP_LAZY),
    ] {
        let s = format!("`{name}` {v:#04x}");
        assert!(doc.contains(&s), "docs/syscalls.md lacks {s:?}");
    }
    assert!(doc.contains(&format!("longer than {PATH_MAX}")));
    assert!(doc.contains("`rdi, rsi, rdx, r10, r8, r9`"));
}

#[test]
fn the_parser_sees_escaped_pipes_and_empty_lists() {
    assert_eq!(cells("| 1 | `a \\| b` | — |"), ["1", "a \\| b", "—"]);
    assert!(list("—").is_empty());
    assert_eq!(list("EBADF, EFAULT"), ["EBADF", "EFAULT"]);
}
