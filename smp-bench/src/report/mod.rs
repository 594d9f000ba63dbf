//! Host side (feature `report`): `bench_results.csv` + `configs/targets.toml` → the seed's
//! status table (text or Markdown) and SVG charts. Used by the `exo-report` binary.

pub mod compare;
mod csv;
mod error;
mod grid;
mod select;
mod status;
pub mod svg;
mod table;
mod targets;

pub use csv::{CSV_HEADER, Row, parse_csv};
pub use error::Error;
pub use select::{Measurement, select};
pub use status::{Status, status};
pub use table::{TableRow, build_table, build_table_with_linux, render_markdown, render_text};
pub use targets::{Comparator, Select, Target, Unit, parse_targets};
