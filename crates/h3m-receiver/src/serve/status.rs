//! The status page (`/`: plain HTML and a little JavaScript, no build step)
//! and the status as JSON ([`super::http::STATUS_PATH`]) it reads every
//! second: the session (group, source, session ID, AMT relay), the
//! receiver's counters (the page shows rates and loss from them), the AMT
//! tunnel's, the server's, and the [`MAX_LISTED`] resources changed last
//! with their state and progress. The page also follows `/events`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::index::State;
use super::{Shared, lock};

/// The status lists at most this many resources (the most recently changed).
pub const MAX_LISTED: usize = 200;

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The status as JSON text.
pub(crate) fn json(shared: &Shared) -> String {
    let (stats, sessions_ended, last_end, finished) = {
        let live = lock(&shared.live);
        (live.stats.clone(), live.sessions_ended, live.last_end, live.summary.is_some())
    };
    let (resources, counts, indexed) = {
        let index = lock(&shared.index);
        let listed: Vec<serde_json::Value> = index
            .recent(MAX_LISTED)
            .into_iter()
            .map(|(rel, e)| {
                let (bytes, missing, reason) = match &e.state {
                    State::Complete(c) => (Some(c.len), None, c.completed_by.map(str::to_owned)),
                    State::Incomplete { missing, received, reason, .. } => {
                        (Some(*received), Some(missing.clone()), Some(reason.clone()))
                    }
                    State::Refused { reason } => (None, None, Some(reason.clone())),
                    State::Pending => (None, None, None),
                };
                json!({
                    "path": format!("/{}", rel.to_string_lossy()),
                    "state": e.state.word(),
                    "length": e.length,
                    "bytes": bytes,
                    "missing": missing,
                    "reason": reason,
                    "content_type": e.content_type,
                    "updated_ms": millis(e.updated),
                })
            })
            .collect();
        (listed, index.state_counts(), index.len().0)
    };
    let s = &shared.opts.session;
    let by_status: serde_json::Map<String, serde_json::Value> =
        lock(&shared.counters.by_status).iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    json!({
        "session": {
            "group": s.group,
            "source": s.source,
            "session_id": s.session_id,
            "amt": s.amt,
            "out_dir": shared.opts.out_dir.to_string_lossy(),
        },
        "now_ms": millis(SystemTime::now()),
        "started_ms": millis(shared.started),
        "finished": finished,
        "sessions_ended": sessions_ended,
        "last_end": last_end,
        "datagrams": stats.datagrams,
        "receiver": stats.receiver,
        "amt": stats.amt,
        "counts": {"pending": counts[0], "complete": counts[1], "incomplete": counts[2], "refused": counts[3]},
        "indexed": indexed,
        "serve": {
            "requests": by_status,
            "waiting": shared.waiting(),
            "connections": shared.open_connections(),
            "body_bytes": shared.counters.body_bytes.load(std::sync::atomic::Ordering::Relaxed),
        },
        "resources": resources,
    })
    .to_string()
}

/// The status page.
pub const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>h3m-recv</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:1em 2em;color:#222}
h1{font-size:1.3em}table{border-collapse:collapse;margin:.5em 0}
td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd}
.num{text-align:right;font-variant-numeric:tabular-nums}
.complete{color:#070}.incomplete,.refused{color:#b00}.pending{color:#a60}
progress{width:8em}#log{font:12px monospace;white-space:pre;max-height:16em;overflow:auto;background:#f6f6f6;padding:.5em}
</style></head><body>
<h1>h3m-recv <span id="state"></span></h1>
<table id="session"></table>
<h2>Reception</h2><table id="rates"></table>
<h2>Resources <small id="counts"></small></h2>
<table><thead><tr><th>path</th><th>state</th><th>progress</th><th class="num">bytes</th><th>missing / how</th><th>type</th></tr></thead><tbody id="res"></tbody></table>
<h2>Events</h2><div id="log"></div>
<p><a href="/metrics">/metrics</a> · <a href="/.well-known/h3m/status">status JSON</a> · <a href="/events">/events</a></p>
<script>
"use strict";
let prev = null;
const $ = id => document.getElementById(id);
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"})[c]);
const rows = pairs => pairs.map(([k, v]) => `<tr><th>${esc(k)}</th><td class="num">${esc(v)}</td></tr>`).join("");
const si = n => n >= 1e9 ? (n/1e9).toFixed(2)+" G" : n >= 1e6 ? (n/1e6).toFixed(2)+" M" : n >= 1e3 ? (n/1e3).toFixed(1)+" k" : n.toFixed(0)+" ";
async function tick() {
  let s;
  try { s = await (await fetch("/.well-known/h3m/status", {cache: "no-store"})).json(); } catch (e) { $("state").textContent = "(not answering)"; return; }
  const r = s.receiver;
  $("state").textContent = s.finished ? "(run ended, still serving)" : s.last_end ? `(session ended: ${s.last_end}, listening)` : "(receiving)";
  $("session").innerHTML = rows([["group", s.session.group], ["source", s.session.source ?? "any (ASM)"],
    ["session ID", s.session.session_id], ["AMT relay", s.session.amt ?? "none (native)"], ["output", s.session.out_dir]]);
  let rate = ["-", "-"];
  if (prev) {
    const dt = (s.now_ms - prev.now_ms) / 1000;
    if (dt > 0) rate = [si((r.body_bytes - prev.receiver.body_bytes) * 8 / dt) + "bit/s", si((s.datagrams - prev.datagrams) / dt) + "datagrams/s"];
  }
  const lost = Math.max(0, r.packet_number_gaps - r.reordered_packets);
  const loss = r.packets + lost > 0 ? (100 * lost / (r.packets + lost)).toFixed(3) + " %" : "-";
  const amt = s.amt ? [["AMT queries / data", `${s.amt.queries} / ${s.amt.data_packets}`], ["AMT relays lost", s.amt.relays_lost]] : [];
  $("rates").innerHTML = rows([["goodput", rate[0]], ["datagrams", `${s.datagrams} (${rate[1]})`], ["packets", r.packets],
    ["body bytes", r.body_bytes], ["packet number gaps (loss)", `${lost} (${loss})`],
    ["dropped (foreign / malformed / protection)", `${r.foreign_session} / ${r.malformed_packets} / ${r.protection_failures}`],
    ["FEC repair / recovered", `${r.fec.repair_datagrams} / ${r.fec.datagrams_recovered}`], ...amt,
    ["HTTP requests", Object.entries(s.serve.requests).map(([k, v]) => `${k}: ${v}`).join(", ") || "0"],
    ["waiting / connections", `${s.serve.waiting} / ${s.serve.connections}`]]);
  const c = s.counts;
  $("counts").textContent = `${c.complete} complete, ${c.pending} pending, ${c.incomplete} incomplete, ${c.refused} refused`;
  $("res").innerHTML = s.resources.map(x => {
    const max = x.length ?? x.bytes ?? 0, val = x.state === "complete" ? max : (x.bytes ?? 0);
    const bar = x.state === "pending" ? "<progress></progress>" : `<progress max="${max || 1}" value="${max ? val : 1}"></progress>`;
    const link = x.state === "complete" ? `<a href="${esc(x.path)}">${esc(x.path)}</a>` : esc(x.path);
    return `<tr><td>${link}</td><td class="${x.state}">${x.state}</td><td>${bar}</td><td class="num">${x.bytes ?? ""}</td><td>${esc(x.missing ?? "")} ${esc(x.reason ?? "")}</td><td>${esc(x.content_type)}</td></tr>`;
  }).join("");
  prev = s;
}
tick(); setInterval(tick, 1000);
const log = [];
const events = new EventSource("/events");
events.onmessage = m => {
  let e; try { e = JSON.parse(m.data); } catch (_) { return; }
  if (e.event === "response_headers" || e.event === "trailers") return;
  log.push(`${new Date().toISOString().slice(11, 23)} ${e.event} ${e.path ?? e.push_id ?? e.reason ?? ""} ${e.status ?? ""}`);
  if (log.length > 100) log.shift();
  $("log").textContent = log.join("\n");
  $("log").scrollTop = 1e9;
};
</script></body></html>
"#;
