//! The commands that ask a running Bowline's admin server (`bowline proxy-status`), and how
//! they print what it answers.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use anyhow::{Context, bail};
use serde_json::Value;

/// The xDS types `proxy-status` shows, in istioctl's order, with their columns.
const TYPES: [(&str, &str); 4] = {
    use bowline_xds::resources::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
    [
        ("CDS", CLUSTER),
        ("LDS", LISTENER),
        ("EDS", ENDPOINT),
        ("RDS", ROUTE),
    ]
};

/// GETs `path` from the admin server at `admin` (`host:port`) and parses the JSON answer; an
/// answer other than 200 is an error carrying the server's text.
pub fn admin_json(admin: &str, path: &str) -> anyhow::Result<Value> {
    let what = || format!("admin server {admin}");
    let mut stream = TcpStream::connect(admin).with_context(|| {
        format!(
            "cannot reach the {}: is Bowline running there? (--admin HOST:PORT, listen.admin)",
            what()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {admin}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("{}: reading {path}", what()))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{}: {path}: not an HTTP answer", what()))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{}: {path}: no status", what()))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    if status != 200 {
        bail!("{}: {path}: {status}: {}", what(), body.trim());
    }
    serde_json::from_str(&body).with_context(|| format!("{}: {path}: not JSON", what()))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// `bowline proxy-status`: one line per connected proxy (`/debug/connections`), in
/// istioctl's layout, then the NACKs with the proxies' errors.
pub fn proxy_status_table(connections: &Value) -> String {
    let mut rows = vec![
        ["NAME", "MEMBER", "NETWORK", "REPLICA", "PROTOCOL"]
            .iter()
            .map(|s| s.to_string())
            .chain(TYPES.iter().map(|(column, _)| column.to_string()))
            .collect::<Vec<_>>(),
    ];
    let mut nacks = Vec::new();
    let mut list: Vec<&Value> = connections.as_array().into_iter().flatten().collect();
    list.sort_by_key(|c| c["proxy"]["id"].as_str().unwrap_or_default().to_string());
    for c in list {
        let text = |v: &Value| {
            v.as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or("-")
                .to_string()
        };
        let id = text(&c["proxy"]["id"]);
        let mut row = vec![
            id.clone(),
            text(&c["proxy"]["member"]),
            text(&c["proxy"]["network"]),
            text(&c["replica"]),
            text(&c["protocol"]),
        ];
        for (column, type_url) in TYPES {
            let status = &c["types"][type_url];
            row.push(status["state"].as_str().unwrap_or("NOT SENT").to_string());
            if status["state"] == "NACKED" {
                nacks.push(format!(
                    "{id} NACKed {column} {}: {}",
                    text(&status["sentVersion"]),
                    text(&status["lastNack"])
                ));
            }
        }
        rows.push(row);
    }
    let mut out = columns(&rows);
    if rows.len() == 1 {
        out.push_str("no proxy is connected to this replica\n");
    }
    for nack in nacks {
        out.push_str(&nack);
        out.push('\n');
    }
    out
}

/// Rows padded into columns.
fn columns(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `bowline proxy-status <node>`: what the proxy was sent against what it would be sent now
/// (`/debug/config_dump?node=` and `&now=true`), per type and resource; and whether they
/// agree.
pub fn proxy_diff(sent: &Value, now: &Value) -> (String, bool) {
    let mut out = String::new();
    let mut same = true;
    for (section, key) in [
        ("Clusters", "name"),
        ("Listeners", "name"),
        ("Endpoints", "cluster"),
        ("Routes", "name"),
    ] {
        let field = section.to_ascii_lowercase();
        let by_name = |dump: &Value| -> BTreeMap<String, Value> {
            dump[&field]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| (r[key].as_str().unwrap_or_default().to_string(), r.clone()))
                .collect()
        };
        let (before, after) = (by_name(sent), by_name(now));
        let mut lines = Vec::new();
        for (name, value) in &after {
            match before.get(name) {
                None => lines.push(format!("  + {name} (not sent yet)")),
                Some(old) if old != value => lines.push(format!(
                    "  ~ {name}\n      sent: {old}\n      now:  {value}"
                )),
                Some(_) => {}
            }
        }
        for name in before.keys().filter(|n| !after.contains_key(*n)) {
            lines.push(format!("  - {name} (sent, no longer served)"));
        }
        if lines.is_empty() {
            out.push_str(&format!("{section}: {} in sync\n", after.len()));
        } else {
            same = false;
            out.push_str(&format!(
                "{section}: {} differ of {} sent, {} now\n",
                lines.len(),
                before.len(),
                after.len()
            ));
            for line in lines {
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    (out, same)
}

/// `bowline explain`: `/debug/explain`'s answer as text, one line per endpoint.
pub fn explain_text(explained: &Value) -> String {
    let text = |v: &Value| {
        v.as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("-")
            .to_string()
    };
    let proxy = &explained["proxy"];
    let ips: Vec<String> = proxy["instanceIps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let mut out = format!(
        "proxy {} (member {}, network {}, instance IPs {}, {}{})\n{}: {}\n",
        text(&proxy["id"]),
        text(&proxy["member"]),
        text(&proxy["network"]),
        if ips.is_empty() {
            "unknown (every family)".to_string()
        } else {
            ips.join(" ")
        },
        if proxy["mtls"] == true {
            "originates mTLS"
        } else {
            "no mTLS"
        },
        if proxy["gateway"] == true {
            ", east-west gateway"
        } else {
            ""
        },
        text(&explained["service"]),
        text(&explained["import"]),
    );
    let totals = |v: &Value| match v.is_null() {
        true => "nothing".to_string(),
        false => format!("{} endpoint(s), weight {}", v["endpoints"], v["weight"]),
    };
    for cluster in explained["clusters"].as_array().into_iter().flatten() {
        let sent = match cluster["connected"] == true {
            true => format!("; last sent: {}", totals(&cluster["sent"])),
            false => String::new(),
        };
        out.push_str(&format!(
            "\n{} (port {} {}): assignment now: {}{sent}\n",
            text(&cluster["cluster"]),
            text(&cluster["portName"]),
            cluster["port"],
            totals(&cluster["now"]),
        ));
        let mut rows = Vec::new();
        for e in cluster["endpoints"].as_array().into_iter().flatten() {
            let addresses: Vec<String> = e["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            let verdict = match e["verdict"].as_str() {
                Some("direct") => format!("direct {}, weight {}", text(&e["address"]), e["weight"]),
                Some("gateway") => {
                    let gateways: Vec<String> = e["gateways"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(text)
                        .collect();
                    format!(
                        "through gateway {}, weight {} each",
                        gateways.join(", "),
                        e["weight"]
                    )
                }
                _ => format!("excluded ({}): {}", text(&e["rule"]), text(&e["reason"])),
            };
            rows.push(vec![
                format!("  {}", text(&e["member"])),
                addresses.join(","),
                text(&e["workload"]),
                verdict,
            ]);
        }
        if rows.is_empty() {
            out.push_str("  no member has endpoints for it\n");
        } else {
            out.push_str(&columns(&rows));
        }
    }
    for m in explained["members"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\nmember {}: {}\n",
            text(&m["member"]),
            text(&m["note"])
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_table_shows_each_types_state_and_the_nacks() {
        let cds = TYPES[0].1;
        let eds = TYPES[2].1;
        let connections = json!([
            {"proxy": {"id": "b", "member": "east", "network": "net-east"}, "replica": "r1",
             "protocol": "sotw",
             "types": {cds: {"state": "SYNCED"}, eds: {"state": "NACKED", "sentVersion": "7", "lastNack": "bad port"}}},
            {"proxy": {"id": "a", "member": null, "network": ""}, "replica": "r1",
             "protocol": "delta", "types": {cds: {"state": "STALE"}}},
        ]);
        let table = proxy_status_table(&connections);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("NAME  MEMBER  NETWORK   REPLICA  PROTOCOL  CDS"),
            "{table}"
        );
        assert!(
            lines[1].starts_with("a     -       -         r1       delta     STALE   NOT SENT"),
            "{table}"
        );
        assert!(lines[2].contains("SYNCED  NOT SENT  NACKED"), "{table}");
        assert_eq!(lines[3], "b NACKed EDS 7: bad port");
        assert!(proxy_status_table(&json!([])).contains("no proxy is connected"));
    }

    #[test]
    fn the_diff_names_what_was_added_changed_and_removed() {
        let sent = json!({"clusters": [{"name": "x"}, {"name": "gone"}], "endpoints": [{"cluster": "x", "w": 1}]});
        let now = json!({"clusters": [{"name": "x"}, {"name": "new"}], "endpoints": [{"cluster": "x", "w": 2}]});
        let (text, same) = proxy_diff(&sent, &now);
        assert!(!same);
        assert!(
            text.contains("Clusters: 2 differ of 2 sent, 2 now"),
            "{text}"
        );
        assert!(text.contains("  + new (not sent yet)"), "{text}");
        assert!(text.contains("  - gone (sent, no longer served)"), "{text}");
        assert!(
            text.contains("  ~ x\n      sent: {\"cluster\":\"x\",\"w\":1}"),
            "{text}"
        );
        assert!(text.contains("Listeners: 0 in sync"), "{text}");
        assert!(proxy_diff(&now, &now).1);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"), "Wikipedia");
    }
}
