//! Human rendering of admin replies: `key: value` lines with the labels aligned, arrays of
//! maps as aligned tables with their key column first, byte counts as KiB/MiB/GiB and
//! durations as `3m12s`/`4.2ms`. Works on any reply (they are all plain JSON-shaped maps),
//! deciding units from the field name (`*bytes*`, `*_secs`, `*_ms`, `*_micros`). Pure.

use serde_json::Value;

/// Columns that identify a row, most specific first; the first one present leads a table.
const KEY_COLUMNS: &[&str] = &["name", "id", "node", "node_id", "key", "level", "partition"];

/// The whole reply, one line per scalar field, a block per table or nested map.
pub fn render(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let fields: Vec<(&String, &Value)> = map.iter().collect();
            let simple: Vec<(String, String)> = fields
                .iter()
                .filter(|(_, v)| !is_block(v))
                .map(|(k, v)| field(k, v))
                .collect();
            let width = simple.iter().map(|(l, _)| l.len() + 1).max().unwrap_or(0);
            let mut out = String::new();
            for (label, value) in &simple {
                out.push_str(&format!("{:<width$} {value}\n", format!("{label}:")));
            }
            for (k, v) in fields.iter().filter(|(_, v)| is_block(v)) {
                out.push_str(&format!("{k}:\n"));
                let inner = match v {
                    Value::Array(rows) => table(rows),
                    other => render(other),
                };
                for line in inner.lines() {
                    out.push_str(&format!("  {line}\n"));
                }
            }
            out
        }
        other => format!("{}\n", scalar(other)),
    }
}

/// A nested map or a non-empty array of maps: rendered as its own block.
fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(_) => true,
        Value::Array(rows) => !rows.is_empty() && rows.iter().all(Value::is_object),
        _ => false,
    }
}

/// A field's label and human value, units decided by its name.
pub fn field(key: &str, v: &Value) -> (String, String) {
    // `last_change_ms_ago`: the unit sits before `_ago`.
    if let Some(base) = key.strip_suffix("_ago") {
        let (label, value) = field(base, v);
        return (format!("{label}_ago"), value);
    }
    let n = v.as_u64();
    let duration = [("_secs", 1_000_000u64), ("_ms", 1_000), ("_micros", 1)]
        .into_iter()
        .find_map(|(suffix, micros)| key.strip_suffix(suffix).map(|l| (l, micros)));
    match (n, duration) {
        (Some(n), Some((label, micros))) => (
            label.to_string(),
            human_duration(u128::from(n) * u128::from(micros)),
        ),
        (Some(n), None) if key.contains("bytes") || key.ends_with("capacity") => {
            (key.to_string(), human_bytes(n))
        }
        _ => (key.to_string(), scalar(v)),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        Value::Array(items) if items.is_empty() => "none".to_string(),
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(", "),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            format!("{f:.3}")
        }
        other => other.to_string(),
    }
}

/// `1.5 MiB`; plain bytes below 1 KiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `850µs`, `4.2ms`, `12.5s`, `3m12s`, `2h5m0s`, `3d4h0m0s`.
pub fn human_duration(micros: u128) -> String {
    if micros == 0 {
        return "0s".to_string();
    }
    if micros < 1_000 {
        return format!("{micros}µs");
    }
    if micros < 1_000_000 {
        return format!("{:.1}ms", micros as f64 / 1e3);
    }
    let secs = micros / 1_000_000;
    if secs < 60 {
        return if micros.is_multiple_of(1_000_000) {
            format!("{secs}s")
        } else {
            format!("{:.1}s", micros as f64 / 1e6)
        };
    }
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h) {
        (0, 0) => format!("{m}m{s}s"),
        (0, _) => format!("{h}h{m}m{s}s"),
        _ => format!("{d}d{h}h{m}m{s}s"),
    }
}

/// Rows as an aligned table: the key column first, the rest in name order, numbers right
/// aligned.
pub fn table(rows: &[Value]) -> String {
    let mut keys: Vec<String> = Vec::new();
    for row in rows.iter().filter_map(Value::as_object) {
        for k in row.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    keys.sort_by_key(|k| {
        (
            KEY_COLUMNS
                .iter()
                .position(|c| c == k)
                .unwrap_or(KEY_COLUMNS.len()),
            k.clone(),
        )
    });
    let header: Vec<String> = keys.iter().map(|k| field(k, &Value::Null).0).collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            keys.iter()
                .map(|k| field(k, r.get(k).unwrap_or(&Value::Null)).1)
                .collect()
        })
        .collect();
    let numeric: Vec<bool> = (0..keys.len())
        .map(|i| {
            rows.iter()
                .all(|r| r.get(&keys[i]).is_none_or(Value::is_number))
        })
        .collect();
    let widths: Vec<usize> = (0..keys.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: &[String]| {
        let mut s = String::new();
        for (i, v) in vals.iter().enumerate() {
            let w = widths[i];
            let pad = w.saturating_sub(v.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            if numeric[i] {
                s.push_str(&" ".repeat(pad));
                s.push_str(v);
            } else {
                s.push_str(v);
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&header);
    for r in &cells {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bytes_and_durations_read_at_a_glance() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(64 << 20), "64.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_duration(850), "850µs");
        assert_eq!(human_duration(4_200), "4.2ms");
        assert_eq!(human_duration(3_000_000), "3s");
        assert_eq!(human_duration(192_000_000), "3m12s");
        assert_eq!(human_duration(7_500_000_000), "2h5m0s");
        assert_eq!(
            field("uptime_secs", &json!(75)),
            ("uptime".into(), "1m15s".into())
        );
        assert_eq!(
            field("last_change_ms_ago", &json!(1500)),
            ("last_change_ago".into(), "1.5s".into())
        );
        assert_eq!(
            field("flush_bytes", &json!(2048)),
            ("flush_bytes".into(), "2.0 KiB".into())
        );
    }

    #[test]
    fn tables_lead_with_the_key_column_and_align() {
        let rows = [
            json!({"status": "alive", "id": "n1", "bytes": 10}),
            json!({"status": "dead", "id": "node-22", "bytes": 4096}),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "id         bytes  status");
        assert_eq!(lines[1], "n1          10 B  alive");
        assert_eq!(lines[2], "node-22  4.0 KiB  dead");
    }

    #[test]
    fn scalars_first_then_blocks() {
        let v = json!({"b": {"x": 1}, "a": "one", "list": [], "rows": [{"name": "m"}]});
        assert_eq!(
            render(&v),
            "a:    one\nlist: none\nb:\n  x: 1\nrows:\n  name\n  m\n"
        );
    }
}
