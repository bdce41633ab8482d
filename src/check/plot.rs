//! latency.svg: each operation's latency (log scale) against when it completed, coloured by
//! outcome, with each fault's window shaded and labelled, so a person sees what the faults did.

use super::history::{History, Outcome};

const W: f64 = 1000.0;
const H: f64 = 400.0;
const PAD: f64 = 40.0;

pub fn svg(h: &History) -> String {
    let end = h
        .ops
        .iter()
        .map(|o| o.complete_us)
        .chain(h.faults.iter().map(|f| f.end_us))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |us: u64| PAD + (us as f64 / end) * (W - 2.0 * PAD);
    // Latency from 100 us to 10 s on a log axis.
    let y = |lat_us: u64| {
        let l = (lat_us.max(100) as f64).log10().min(7.0);
        H - PAD - (l - 2.0) / 5.0 * (H - 2.0 * PAD)
    };
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">
<rect width="{W}" height="{H}" fill="white"/>
"#
    );
    for f in &h.faults {
        let (x0, x1) = (x(f.start_us), x(f.end_us));
        s.push_str(&format!(
            r##"<rect x="{x0:.1}" y="{PAD}" width="{:.1}" height="{:.1}" fill="#f4c7c3" opacity="0.6"/><text x="{x0:.1}" y="{:.1}">{} {}</text>
"##,
            (x1 - x0).max(1.0),
            H - 2.0 * PAD,
            PAD - 4.0,
            f.kind,
            f.nodes.join(",")
        ));
    }
    for (label, lat) in [
        ("100us", 100),
        ("1ms", 1_000),
        ("10ms", 10_000),
        ("100ms", 100_000),
        ("1s", 1_000_000),
        ("10s", 10_000_000),
    ] {
        let yy = y(lat);
        s.push_str(&format!(
            r##"<line x1="{PAD}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="2" y="{yy:.1}">{label}</text>
"##,
            W - PAD
        ));
    }
    for o in &h.ops {
        let colour = match o.outcome {
            Outcome::Ok => "#1a7f37",
            Outcome::Fail => "#cf222e",
            Outcome::Unknown => "#bf8700",
        };
        s.push_str(&format!(
            r#"<circle cx="{:.1}" cy="{:.1}" r="1.5" fill="{colour}"/>
"#,
            x(o.complete_us),
            y(o.complete_us.saturating_sub(o.invoke_us))
        ));
    }
    s.push_str(&format!(
        r##"<text x="{PAD}" y="{:.1}">time ({:.1} s); green ok, red failed, amber unknown; shaded: faults</text>
</svg>
"##,
        H - 10.0,
        end / 1e6
    ));
    s
}
