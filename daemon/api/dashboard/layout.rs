//! The frame every dashboard page shares: the HTML document with its inline CSS and
//! script, the header (applied commit, errors), and how values are shown (states, times,
//! durations).
//!
//! Contract:
//! - Nothing is loaded from the network: the CSS and the script are inline, the charts
//!   inline SVG. The script only enhances: every page reads fully without it.
//! - Live updates are a light poll: every page carries an `ETag` (a digest of its HTML)
//!   and answers `304` to a matching `If-None-Match`. The script asks for its own URL
//!   every [`POLL_SECONDS`] while the tab is visible and swaps in the elements marked
//!   `data-live` that changed (never one holding the keyboard focus). So a page's HTML
//!   must not change by itself: times relative to now are `<time data-rel>` elements the
//!   script fills in.
//! - The token is never in a page: the script keeps what the user types in
//!   `sessionStorage` and sends it with the forms that post to the API.

use std::hash::{Hash, Hasher};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::engine::status::Status;
use crate::store::{time_text, Run, RunState};

/// How often a page asks whether it changed.
pub const POLL_SECONDS: u32 = 2;

/// The whole document for `body`, `304` when the client has it already.
pub fn page(request: &HeaderMap, title: &str, status: StatusCode, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body data-poll=(POLL_SECONDS) {
                a.skip href="#content" { "Skip to content" }
                (nav())
                main #content { (body) }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    };
    let text = markup.into_string();
    let mut digest = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut digest);
    let etag = format!("W/\"{:016x}\"", digest.finish());
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh && status == StatusCode::OK {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (status, Html(text)).into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn nav() -> Markup {
    html! {
        nav {
            a href="/" { strong { "sundial" } }
            a href="/runs" { "Runs" }
            (token_field())
        }
    }
}

/// The applied commit and the newest commit's problems; live.
pub fn header_section(status: &Status) -> Markup {
    html! {
        header #status data-live {
            p {
                @if status.ready { "Applied commit " } @else { "Not ready yet; " }
                @if let Some(c) = &status.commit {
                    code #commit title=(c) { (c.get(..12).unwrap_or(c)) }
                }
                @if let Some(at) = status.synced_at { span.mute { " · synced " (utc(Some(at))) } }
            }
            @if let Some(c) = &status.cluster {
                p #cluster {
                    "Node " code { (c.node) } ": "
                    @match (&c.leader, c.leads) {
                        (_, Some(epoch)) => { strong { "leader" } " (epoch " (epoch) ")" }
                        (Some((leader, epoch)), None) => { "standby; " code { (leader) } " leads (epoch " (epoch) ")" }
                        (None, None) => { "standby; no node leads right now" }
                    }
                    span.mute {
                        " · nodes: "
                        @for (i, n) in c.nodes.iter().enumerate() {
                            @if i > 0 { ", " }
                            span.node title=(n.labels) {
                                (n.name) " " (n.running)
                                @if let Some(capacity) = n.capacity { "/" (capacity) }
                                " running"
                                @if !n.labels.is_empty() { " [" (n.labels) "]" }
                                @if !n.alive { " (silent)" }
                            }
                        }
                    }
                    @if let Some(e) = &c.error { " · " span.tag.bad { "cannot keep the lease: " (e) } }
                }
            }
            @if let Some((kind, message)) = &status.source.error {
                section.errors #source {
                    h2 { "Repository" }
                    p { (message) }
                    p.mute {
                        "Failing (" (kind.as_str()) ") since " (utc(status.source.since))
                        "; last success " (utc(status.source.last_success_at))
                        ". The deployments in force keep running."
                    }
                }
            }
            @if status.notifications.failing + status.notifications.given_up > 0 {
                section.errors #notifications {
                    h2 { "Notifications" }
                    p {
                        (status.notifications.failing) " waiting after a failed delivery, "
                        (status.notifications.given_up) " given up"
                        @if let Some((target, error, at)) = &status.notifications.last_error {
                            ". Last: " (utc(Some(*at))) ", " (target) ": " (error)
                        }
                    }
                    p.mute { "Runs are not held up; deliveries are tried again with backoff for a day." }
                }
            }
            @if !status.errors.is_empty() {
                section.errors {
                    h2 { "Errors" }
                    ul #errors { @for e in &status.errors {
                        li { code { (e.file) ":" (e.line) ":" (e.column) } " " (e.message) }
                    } }
                    p.mute { "Files with errors keep their last good version running." }
                }
            }
            @if !status.warnings.is_empty() {
                details {
                    summary { (status.warnings.len()) " warning(s)" }
                    ul { @for w in &status.warnings {
                        li { code { (w.file) ":" (w.line) ":" (w.column) } " " (w.message) }
                    } }
                }
            }
        }
    }
}

/// Where the user types the API token; the page itself never holds it.
fn token_field() -> Markup {
    html! {
        form #auth onsubmit="return false" {
            label { "API token " input #token type="password" autocomplete="off" placeholder="contents of <state-dir>/token"; }
        }
    }
}

pub fn badge(state: RunState) -> Markup {
    html! { span class=(format!("badge s-{}", state.as_str())) { (state.as_str()) } }
}

pub fn utc(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "–".into())
}

/// The time in the schedule's own zone, as its users think of it.
pub fn in_zone(at: DateTime<Utc>, tz: &str) -> String {
    match tz.parse::<chrono_tz::Tz>() {
        Ok(zone) => at
            .with_timezone(&zone)
            .format("%a %Y-%m-%d %H:%M %Z")
            .to_string(),
        Err(_) => utc(Some(at)),
    }
}

/// "in 3m05s" (`until`) or "3m05s ago", filled in by the script from `at`.
pub fn relative(at: DateTime<Utc>, rel: &str) -> Markup {
    html! { time datetime=(time_text(at)) data-rel=(rel) {} }
}

/// An ended run's duration; a running one's is filled in by the script.
pub fn duration(run: &Run) -> Markup {
    match (run.started_at, run.ended_at) {
        (Some(start), Some(end)) => {
            html! { (seconds_text((end - start).num_milliseconds() as f64 / 1000.0)) }
        }
        (Some(start), None) => relative(start, "since"),
        _ => html! { "–" },
    }
}

/// Seconds from the slot's time to the start (scheduled runs only).
pub fn lateness_seconds(run: &Run) -> Option<f64> {
    match (run.scheduled_for, run.started_at) {
        (Some(due), Some(start)) => Some((start - due).num_milliseconds() as f64 / 1000.0),
        _ => None,
    }
}

pub fn lateness(run: &Run) -> String {
    lateness_seconds(run).map_or_else(|| "–".into(), seconds_text)
}

pub fn seconds_text(s: f64) -> String {
    if s.abs() < 60.0 {
        format!("{s:.1}s")
    } else if s.abs() < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as i64, (s % 60.0).abs() as i64)
    } else if s.abs() < 86400.0 {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as i64,
            ((s % 3600.0) / 60.0).abs() as i64
        )
    } else {
        format!(
            "{}d{:02}h",
            (s / 86400.0) as i64,
            ((s % 86400.0) / 3600.0).abs() as i64
        )
    }
}

pub fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

const CSS: &str = r#"
:root{color-scheme:light dark;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--run:#0969da;--mute:#6e7781;--line:#8884}
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0}
main{max-width:1600px;margin:0 auto;padding:1rem}
nav{display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;align-items:center;padding:.5rem 1rem;border-bottom:1px solid var(--line)}
nav #auth{margin-left:auto}
.skip{position:absolute;left:-999px}.skip:focus{left:.5rem;top:.5rem;background:Canvas;padding:.3rem;z-index:2}
:focus-visible{outline:2px solid var(--run);outline-offset:2px}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:.85em;color:var(--mute);font-weight:600}
.scroll{overflow-x:auto}
.badge{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.85em;color:#fff;background:var(--mute);white-space:nowrap}
.s-Completed{background:var(--ok);fill:var(--ok)}.s-Failed,.s-Crashed,.s-TimedOut{background:var(--bad);fill:var(--bad)}
.s-Running,.s-Pending{background:var(--run);fill:var(--run)}.s-AwaitingRetry,.s-Scheduled{background:var(--warn);fill:var(--warn)}
.s-Cancelled,.s-Skipped{fill:var(--mute)}
.attempts a{display:inline-block;min-width:1.3rem;text-align:center;border-radius:.3rem;color:#fff;font-size:.8em;text-decoration:none;margin-right:.15rem}
.tag{font-size:.8em;border:1px solid var(--mute);border-radius:.3rem;padding:0 .3rem}.tag.bad{border-color:var(--bad);color:var(--bad)}
.errors{border-left:4px solid var(--bad);padding-left:.75rem}.errors li{margin:.2rem 0}
.mute{color:var(--mute)}code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em}
pre.log{background:#0d1117;color:#e6edf3;padding:.75rem;overflow:auto;max-height:70vh;white-space:pre-wrap;word-break:break-word}
pre.json{background:#8881;padding:.5rem;overflow:auto;max-height:20rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{color:var(--mute)}dd{margin:0;word-break:break-word}
button,input,select,textarea{font:inherit}button{padding:.2rem .7rem;cursor:pointer}output{color:var(--bad);font-size:.85em}
#auth input{width:16rem;max-width:100%}
form.filters{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:end;margin-bottom:1rem}
form.filters label,form.params label{display:flex;flex-direction:column;font-size:.85em;color:var(--mute)}
form.params{display:grid;gap:.7rem;max-width:40rem}form.params input,form.params select,form.params textarea{max-width:100%}
form.params .help{font-size:.85em}form.params output{display:block}
.pager{display:flex;gap:1rem;margin:.5rem 0}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:1rem}
figure{margin:0}figcaption{font-size:.9em;color:var(--mute)}svg.chart{width:100%;height:auto;max-height:220px}
svg.chart .axis{stroke:var(--line)}svg.chart text{fill:var(--mute);font-size:10px}svg.chart .limit{stroke:var(--bad);stroke-dasharray:4 3}
svg.chart a:focus rect{stroke:var(--run);stroke-width:2}
.log-tools{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;margin-bottom:.4rem}
.line[hidden]{display:none}
@media (max-width:700px){
 main{padding:.5rem}body{font-size:14px}nav{padding:.5rem}nav #auth{margin-left:0;width:100%}
 table.cards thead{display:none}
 table.cards tr{display:grid;grid-template-columns:1fr auto;gap:.1rem .6rem;padding:.4rem 0;border-bottom:1px solid var(--line)}
 table.cards td{border:0;padding:0}table.cards td.wide{display:none}
 table.cards td[data-label]:not(:first-child)::before{content:attr(data-label) ": ";color:var(--mute);font-size:.85em}
 table.cards td.full{grid-column:1/-1}
}
@media (min-width:1800px){body{font-size:16px}}
"#;

/// Keeps the typed token in sessionStorage, posts the API forms (a custom run's fields as
/// typed JSON), fills in relative times, polls for changes, and the log's search and
/// follow.
const SCRIPT: &str = r#"
(()=>{
const $=(s,r=document)=>r.querySelector(s),$$=(s,r=document)=>[...r.querySelectorAll(s)];
const token=$('#token');
if(token){token.value=sessionStorage.getItem('sundial-token')||'';
token.addEventListener('input',()=>sessionStorage.setItem('sundial-token',token.value));}
const pad=n=>String(Math.floor(n)).padStart(2,'0');
function span(s){s=Math.abs(s);if(s<60)return s.toFixed(0)+'s';if(s<3600)return Math.floor(s/60)+'m'+pad(s%60)+'s';
if(s<86400)return Math.floor(s/3600)+'h'+pad(s%3600/60)+'m';return Math.floor(s/86400)+'d'+pad(s%86400/3600)+'h';}
function rel(){for(const t of $$('time[data-rel]')){const s=(Date.parse(t.getAttribute('datetime'))-Date.now())/1000;
t.textContent=t.dataset.rel==='until'?(s<=0?'due':'in '+span(s)):t.dataset.rel==='since'?span(s)+' so far':span(s)+' ago';}}
function value(field){const v=field.value;if(v==='')return undefined;
switch(field.dataset.kind){case 'integer':case 'number':return Number(v);case 'text':return v;default:return JSON.parse(v);}}
function params(form){const out={};let bad=false;
for(const f of $$('[data-param]',form)){const o=$('output[for="'+f.id+'"]',form);if(o)o.textContent='';
try{const v=value(f);if(v!==undefined){if(f.dataset.param==='')Object.assign(out,v);else out[f.dataset.param]=v;}}catch(e){bad=true;if(o)o.textContent='Not JSON: '+e.message;}}
return bad?null:out;}
document.addEventListener('submit',async(event)=>{const form=event.target;if(!form.matches('form.api'))return;
event.preventDefault();const out=$('output.result',form)||$('output',form),list=$('ul.problems',form);
if(list)list.replaceChildren();out.textContent='';
const t=sessionStorage.getItem('sundial-token')||'';
if(!t){out.textContent='Type the API token (the file <state-dir>/token) first.';if(token)token.focus();return;}
const body=form.dataset.params?params(form):{};if(body===null)return;
out.textContent='…';
try{const r=await fetch(form.dataset.post,{method:'POST',headers:{'Authorization':'Bearer '+t,'Content-Type':'application/json'},
body:JSON.stringify(form.dataset.params?{parameters:body}:{})});const j=await r.json();
if(!r.ok){out.textContent=j.error;
for(const e of j.errors||[]){if(list){const li=document.createElement('li');li.textContent=e;list.append(li);}
const m=/^`([^`]+)`/.exec(e),f=m&&$$('[data-param]',form).find(f=>f.dataset.param===m[1]),o=f&&$('output[for="'+f.id+'"]',form);
if(o)o.textContent=e;}return;}
if(form.dataset.goto==='run'){location.href='/runs/'+j.id;}else{out.textContent='Done.';poll();}
}catch(e){out.textContent=String(e);}});
const search=$('#log-search'),follow=$('#log-follow'),count=$('#log-count');
// The log is looked up each time: a live update replaces it.
function logView(){const log=$('#log');if(!log)return;const q=search?search.value.toLowerCase():'';let shown=0,all=0;
for(const l of $$('.line',log)){all++;const hit=!q||l.textContent.toLowerCase().includes(q);l.hidden=!hit;if(hit)shown++;}
if(count)count.textContent=q?shown+' of '+all+' lines':'';if(follow&&follow.checked)log.scrollTop=log.scrollHeight;}
if(search)search.addEventListener('input',logView);if(follow)follow.addEventListener('change',logView);
let etag=null,busy=false;
async function poll(){if(document.hidden||busy)return;busy=true;
try{const r=await fetch(location.href,{cache:'no-store',headers:etag?{'If-None-Match':etag}:{}});
if(r.status===200){etag=r.headers.get('ETag');const doc=new DOMParser().parseFromString(await r.text(),'text/html');
for(const el of $$('[data-live]')){const fresh=doc.getElementById(el.id);
if(fresh&&fresh.innerHTML!==el.innerHTML&&!el.contains(document.activeElement)){el.innerHTML=fresh.innerHTML;}}
}
document.body.dataset.polls=String(Number(document.body.dataset.polls||0)+1);}catch(e){}finally{busy=false;rel();logView();}}
rel();logView();setInterval(rel,1000);setInterval(poll,1000*Number(document.body.dataset.poll||2));
})();
"#;
