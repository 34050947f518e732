//! A self-contained HTML rendering of a pipeline [`Report`], with inline SVG bar charts: what was
//! quarantined and why, and how complete each input column was.

use crate::pipeline::Report;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Horizontal bar chart of `(label, value)` rows; `max` scales the bars, `unit` follows each value.
fn bars(rows: &[(String, f64)], max: f64, unit: &str, color: &str) -> String {
    let (bar_x, width, row_h) = (260.0, 420.0, 22.0);
    let height = row_h * rows.len() as f64 + 10.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="780" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = i as f64 * row_h + 5.0;
        let w = if max > 0.0 {
            (v / max * width).max(if *v > 0.0 { 1.0 } else { 0.0 })
        } else {
            0.0
        };
        let shown = if unit == "%" {
            format!("{v:.2}%")
        } else {
            format!("{v:.0}")
        };
        svg += &format!(
            r#"<text x="{tx}" y="{ty}" text-anchor="end">{label}</text><rect x="{bar_x}" y="{y}" width="{w:.1}" height="16" fill="{color}"/><text x="{vx:.1}" y="{ty}">{shown}</text>"#,
            tx = bar_x - 6.0,
            ty = y + 12.0,
            label = esc(label),
            vx = bar_x + w + 4.0,
        );
    }
    svg + "</svg>"
}

/// The report as one HTML page (no external resources).
pub(crate) fn render(r: &Report) -> String {
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Data quality report</title><style>\
         body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}\
         table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
         td:first-child,th:first-child,td:nth-child(2),th:nth-child(2){text-align:left}.ok{color:#176d2c}.bad{color:#b3261e}</style></head><body>",
    );
    h += &format!(
        "<h1>Data quality report</h1><p>Source <code>{}</code> · SHA-256 <code>{}</code></p>",
        esc(&r.source.uri),
        esc(&r.source.fingerprint)
    );
    h += &format!(
        "<table><tr><th>rows in</th><th>rows out</th><th>quarantined</th><th>exact duplicates</th><th>near duplicates</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        r.rows_in, r.rows_out, r.rows_quarantined, r.duplicates_removed, r.near_duplicates_removed
    );
    if !r.quarantined_by_reason.is_empty() {
        let rows: Vec<(String, f64)> = r
            .quarantined_by_reason
            .iter()
            .map(|(k, v)| (k.clone(), *v as f64))
            .collect();
        let max = rows.iter().map(|x| x.1).fold(0.0, f64::max);
        h += "<h2>Quarantined rows by reason</h2>";
        h += &bars(&rows, max, "rows", "#b3261e");
    }
    if let Some(p) = &r.input_profile {
        let rows: Vec<(String, f64)> = p
            .columns
            .iter()
            .map(|c| {
                let missing = if c.count == 0 {
                    0.0
                } else {
                    100.0 * (c.nulls + c.nans) as f64 / c.count as f64
                };
                (c.name.clone(), missing)
            })
            .collect();
        let max = rows.iter().map(|x| x.1).fold(0.0, f64::max);
        h += "<h2>Missing values in the input (null or NaN), per column</h2>";
        h += &bars(&rows, max, "%", "#e08a00");
    }
    if !r.expectations.is_empty() {
        h += "<h2>Expectations on the output</h2><table><tr><th>expectation</th><th>column</th><th>result</th><th>unexpected</th><th>%</th></tr>";
        for e in &r.expectations {
            let (class, word) = if e.success {
                ("ok", "pass")
            } else {
                ("bad", "FAIL")
            };
            h += &format!(
                "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{word}</td><td>{}</td><td>{:.3}</td></tr>",
                e.expectation.rule.kind(),
                esc(e.expectation.rule.column().unwrap_or("-")),
                e.unexpected_count,
                e.unexpected_percent
            );
        }
        h += "</table>";
    }
    h += "<h2>Steps</h2><ol>";
    for s in &r.steps {
        h += &format!("<li>{}</li>", esc(s));
    }
    h + "</ol></body></html>\n"
}
