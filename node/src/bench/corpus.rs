//! Reading a directory in the NAB layout: `data/<category>/<file>.csv`,
//! `labels/combined_windows.json` and `config/profiles.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;
use time::macros::format_description;
use time::PrimitiveDateTime;

use super::score::Costs;

/// One data file.
#[derive(Debug, Clone)]
pub struct Series {
    /// Path under `data/`, with `/` separators (`realKnownCause/x.csv`).
    pub name: String,
    /// Row timestamps as written, `YYYY-MM-DD HH:MM:SS`.
    pub stamps: Vec<String>,
    /// Row timestamps, epoch milliseconds (UTC).
    pub times_ms: Vec<i64>,
    /// Row values.
    pub values: Vec<f64>,
}

/// Every CSV under `dir`, sorted by name.
pub fn read_series(dir: &Path) -> anyhow::Result<Vec<Series>> {
    let mut paths = Vec::new();
    collect_csv(dir, &mut paths)?;
    paths.sort();
    if paths.is_empty() {
        bail!("no CSV file under {}", dir.display());
    }
    paths
        .iter()
        .map(|path| {
            let name = relative_name(dir, path);
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            parse_csv(name, &text).with_context(|| format!("in {}", path.display()))
        })
        .collect()
}

fn collect_csv(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect_csv(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "csv") {
            out.push(path);
        }
    }
    Ok(())
}

fn relative_name(dir: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(dir).unwrap_or(path);
    let parts: Vec<_> = relative.iter().map(|p| p.to_string_lossy()).collect();
    parts.join("/")
}

/// Parses a `timestamp,value` CSV: a header, any line endings, values in
/// any `f64` notation, blank lines ignored.
pub fn parse_csv(name: String, text: &str) -> anyhow::Result<Series> {
    let mut series =
        Series { name, stamps: Vec::new(), times_ms: Vec::new(), values: Vec::new() };
    let rows = text.lines().map(str::trim).enumerate().filter(|(_, l)| !l.is_empty());
    for (number, line) in rows.skip(1) {
        let (stamp, value) =
            line.split_once(',').with_context(|| format!("line {}", number + 1))?;
        let stamp = stamp.trim();
        let value: f64 = value
            .trim()
            .parse()
            .with_context(|| format!("line {}: value {value:?}", number + 1))?;
        series.times_ms.push(
            epoch_ms(stamp).with_context(|| format!("line {}: {stamp:?}", number + 1))?,
        );
        series.stamps.push(stamp.to_owned());
        series.values.push(value);
    }
    Ok(series)
}

/// Epoch milliseconds of `YYYY-MM-DD HH:MM:SS`, read as UTC.
pub fn epoch_ms(stamp: &str) -> anyhow::Result<i64> {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let at = PrimitiveDateTime::parse(stamp, &format)?;
    Ok(at.assume_utc().unix_timestamp() * 1_000)
}

/// Anomaly windows per file, as timestamps.
pub type Labels = BTreeMap<String, Vec<(String, String)>>;

/// Reads `combined_windows.json`.
pub fn read_labels(path: &Path) -> anyhow::Result<Labels> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Maps windows to inclusive row ranges. A bound maps to the first row
/// with that timestamp; a bound matching no row maps to the first row at
/// or after it (start) or the last row at or before it (end).
pub fn window_rows(
    series: &Series,
    windows: &[(String, String)],
) -> anyhow::Result<Vec<(usize, usize)>> {
    let mut rows = Vec::with_capacity(windows.len());
    for (start, end) in windows {
        let (start, end) = (trim_fraction(start), trim_fraction(end));
        let left = first_row(series, start).or_else(|| {
            let t = epoch_ms(start).ok()?;
            series.times_ms.iter().position(|&r| r >= t)
        });
        let right = first_row(series, end).or_else(|| {
            let t = epoch_ms(end).ok()?;
            series.times_ms.iter().rposition(|&r| r <= t)
        });
        match (left, right) {
            (Some(l), Some(r)) if l <= r => rows.push((l, r)),
            _ => bail!("window {start} .. {end} of {} has no rows", series.name),
        }
    }
    rows.sort_unstable();
    Ok(rows)
}

fn first_row(series: &Series, stamp: &str) -> Option<usize> {
    series.stamps.iter().position(|s| s == stamp)
}

/// `2014-04-10 07:15:00.000000` without its fraction of a second.
fn trim_fraction(stamp: &str) -> &str {
    stamp.split_once('.').map_or(stamp, |(whole, _)| whole).trim()
}

#[derive(Debug, Deserialize)]
struct Profile {
    #[serde(rename = "CostMatrix")]
    costs: CostMatrix,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CostMatrix {
    tp_weight: f64,
    fp_weight: f64,
    fn_weight: f64,
}

/// Reads `profiles.json`: the three NAB profiles first, in their usual
/// order, then any other by name.
pub fn read_profiles(path: &Path) -> anyhow::Result<Vec<(String, Costs)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let profiles: BTreeMap<String, Profile> = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", path.display()))?;
    let order = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"];
    let rank = |name: &str| order.iter().position(|o| *o == name).unwrap_or(order.len());
    let mut list: Vec<_> = profiles
        .into_iter()
        .map(|(name, p)| {
            let c = p.costs;
            (name, Costs { tp: c.tp_weight, fp: c.fp_weight, fn_: c.fn_weight })
        })
        .collect();
    list.sort_by_key(|(name, _)| rank(name));
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quirks_are_read() {
        // (text, values)
        let cases: [(&str, &[f64]); 4] = [
            ("timestamp,value\r\n2014-01-01 00:00:00,1\r\n", &[1.0]),
            ("timestamp,value\n2014-01-01 00:00:00,-1.5e-05", &[-1.5e-5]),
            (
                "timestamp,value\n2014-01-01 00:00:00,2\n\n2014-01-01 00:00:00,3\n",
                &[2.0, 3.0],
            ),
            ("timestamp,value\n", &[]),
        ];
        for (text, values) in cases {
            let series = parse_csv("x".into(), text).unwrap();
            assert_eq!(series.values, values, "{text:?}");
            assert_eq!(series.stamps.len(), values.len());
        }
    }

    #[test]
    fn window_bounds_map_to_the_first_matching_row() {
        let text = "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 01:00:00,1\n\
                    2014-01-01 01:00:00,1\n2014-01-01 00:30:00,1\n2014-01-01 03:00:00,1\n";
        let series = parse_csv("x".into(), text).unwrap();
        // (start, end, rows)
        let cases = [
            ("2014-01-01 01:00:00.000000", "2014-01-01 03:00:00.000000", (1, 4)),
            ("2014-01-01 00:30:00.000000", "2014-01-01 01:00:00.000000", (3, 1)),
            ("2014-01-01 00:10:00.000000", "2014-01-01 02:00:00.000000", (1, 3)),
        ];
        for (start, end, expected) in cases {
            let windows = [(start.to_owned(), end.to_owned())];
            match window_rows(&series, &windows) {
                Ok(rows) => assert_eq!(rows, [expected], "{start}"),
                Err(_) => assert!(expected.0 > expected.1, "{start}"),
            }
        }
    }
}
