//! Watching a running Weir pipeline over HTTP (`weir run --serve`): a live dashboard, the
//! Prometheus `/metrics`, `/status` and the tap.
//!
//! | Path | What |
//! |---|---|
//! | `/` | the dashboard: one page, its script and styles inside the binary (no CDN) |
//! | `/events?tap=PORT` | server-sent events: a `tick` ([`Snapshot`]) twice a second, and `tap` events with the records out of `PORT` |
//! | `/snapshot` | the latest [`Snapshot`] as JSON (what `weir top` reads) |
//! | `/graph` | the plan's components, edges and tappable ports as JSON |
//! | `/status` | the run so far as JSON, in the shape of `weir run --report` |
//! | `/metrics` | Prometheus text format (see [`prometheus`]) |
//!
//! The server runs on its own thread (a single-threaded Tokio runtime with axum), so it never
//! takes a worker's time; everything it shows it reads from the run's shared counters when
//! asked.
//!
//! ```no_run
//! use std::sync::Arc;
//! use weir_engine::live::{Observer, Taps};
//!
//! let observer = Arc::new(Observer::new(Taps::All));
//! let server = weir_serve::serve("127.0.0.1:0", weir_serve::Page::Run {
//!     observer: Arc::clone(&observer),
//!     file: "p.toml".into(),
//!     overrides: vec![],
//! }).unwrap();
//! println!("dashboard at http://{}/", server.address());
//! ```

#![forbid(missing_docs)]
// Handlers return their error responses directly, on the cold path.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::Stream;
use serde::{Deserialize, Serialize};
use weir_engine::live::{Live, Observer};

pub mod prometheus;
pub mod snapshot;

pub use snapshot::Snapshot;

/// What a server shows.
pub enum Page {
    /// A run, live.
    Run {
        /// The run's observer (give the same one to the run's options).
        observer: Arc<Observer>,
        /// The pipeline file, for `/status`.
        file: String,
        /// Its `--set` overrides, for `/status`.
        overrides: Vec<String>,
    },
    /// A finished page: `weir compare --serve`'s table and plot.
    Static {
        /// The page's HTML.
        html: String,
    },
}

/// A running server.
pub struct Server {
    address: SocketAddr,
}

impl Server {
    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

struct App {
    page: Page,
    sampler: snapshot::Sampler,
}

impl App {
    fn live(&self) -> Result<&Arc<Live>, Response> {
        match &self.page {
            Page::Run { observer, .. } => observer.live().ok_or_else(|| {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the run has not started yet\n",
                )
                    .into_response()
            }),
            Page::Static { .. } => {
                Err((StatusCode::NOT_FOUND, "this page shows no run\n").into_response())
            }
        }
    }
}

/// Starts serving `page` on `address` (`HOST:PORT`; port 0 picks a free one). The listener
/// is bound before this returns, so an address in use is an error here, not later.
pub fn serve(address: &str, page: Page) -> Result<Server, String> {
    let listener = std::net::TcpListener::bind(address)
        .map_err(|e| format!("cannot serve on {address}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot serve on {address}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot serve on {address}: {e}"))?;
    let app = Arc::new(App {
        page,
        sampler: snapshot::Sampler::default(),
    });
    let router = Router::new()
        .route("/", get(index))
        .route("/events", get(events))
        .route("/snapshot", get(snapshot_json))
        .route("/graph", get(graph))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(app);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the server: {e}"))?;
    std::thread::Builder::new()
        .name("weir-serve".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let _ = axum::serve(listener, router).await;
            })
        })
        .map_err(|e| format!("cannot start the server: {e}"))?;
    Ok(Server { address: bound })
}

async fn index(State(app): State<Arc<App>>) -> Response {
    match &app.page {
        Page::Run { .. } => Html(include_str!("dashboard.html")).into_response(),
        Page::Static { html } => Html(html.clone()).into_response(),
    }
}

async fn snapshot_json(State(app): State<Arc<App>>) -> Response {
    match app.live() {
        Ok(live) => Json(app.sampler.snapshot(live, Duration::ZERO)).into_response(),
        Err(r) => r,
    }
}

async fn status(State(app): State<Arc<App>>) -> Response {
    let live = match app.live() {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Page::Run {
        file, overrides, ..
    } = &app.page
    else {
        unreachable!("a live run has a run page");
    };
    match weir_engine::report::Report::new(&live.report(), file, overrides) {
        Ok(r) => Json(r).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    match app.live() {
        Ok(live) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            prometheus::scrape(live),
        )
            .into_response(),
        Err(r) => r,
    }
}

/// The plan as the dashboard draws it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Graph {
    /// The pipeline's name.
    pub pipeline: String,
    /// Components, in plan order (each after its inputs).
    pub nodes: Vec<GraphNode>,
    /// Edges: (from, to, port name or "").
    pub edges: Vec<(usize, usize, String)>,
    /// Ports the dashboard can tail (`id` or `id.PORT`).
    pub ports: Vec<String>,
}

/// A component of the [`Graph`].
#[derive(Debug, Serialize, Deserialize)]
pub struct GraphNode {
    /// Its id.
    pub id: String,
    /// source, transform or sink.
    pub kind: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Its column in a left-to-right drawing: the longest path from a source.
    pub depth: usize,
}

async fn graph(State(app): State<Arc<App>>) -> Response {
    let live = match app.live() {
        Ok(l) => l,
        Err(r) => return r,
    };
    let plan = &live.plan;
    let mut depth = vec![0usize; plan.nodes.len()];
    for (i, n) in plan.nodes.iter().enumerate() {
        depth[i] = n
            .inputs
            .iter()
            .map(|r| depth[r.node] + 1)
            .max()
            .unwrap_or(0);
    }
    Json(Graph {
        pipeline: plan.name.clone(),
        nodes: plan
            .nodes
            .iter()
            .zip(&depth)
            .map(|(n, d)| GraphNode {
                id: n.id.clone(),
                kind: n.kind.singular().to_string(),
                ty: n.ty.clone(),
                depth: *d,
            })
            .collect(),
        edges: plan
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| {
                n.inputs
                    .iter()
                    .map(move |r| (r.node, i, r.port.name().to_string()))
            })
            .collect(),
        ports: live
            .taps
            .iter()
            .map(|(_, t)| t.name().to_string())
            .collect(),
    })
    .into_response()
}

#[derive(Deserialize)]
struct EventsQuery {
    tap: Option<String>,
}

/// Ends a tap's watch when the stream that asked for it is dropped (the browser left).
struct Watching(Arc<weir_operators::tap::Tap>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.unwatch();
    }
}

async fn events(State(app): State<Arc<App>>, Query(q): Query<EventsQuery>) -> Response {
    let live = match app.live() {
        Ok(l) => Arc::clone(l),
        Err(r) => return r,
    };
    let tap = match q.tap.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(name) => match live.tap(name) {
            Some(t) => {
                t.watch();
                Some(Watching(Arc::clone(t)))
            }
            None => {
                return (StatusCode::NOT_FOUND, format!("no port `{name}` to tap\n"))
                    .into_response()
            }
        },
    };
    Sse::new(ticks(app, live, tap))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The event stream: a tick (the snapshot) every half second, each followed by the tap's new
/// records, if a port is tapped.
fn ticks(
    app: Arc<App>,
    live: Arc<Live>,
    tap: Option<Watching>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(
        (app, live, tap, 0u64, true),
        |(app, live, tap, since, first)| async move {
            if !first {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let snap = app.sampler.snapshot(&live, Duration::from_millis(250));
            let mut data = serde_json::to_string(&snap).unwrap_or_default();
            let mut since = since;
            if let Some(t) = &tap {
                let lines = t.0.recent(since);
                if let Some((s, _)) = lines.last() {
                    since = *s;
                }
                // The tap's records ride in the tick, as raw JSON: one event per half second.
                let records: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
                data.pop();
                data.push_str(",\"tap\":[");
                data.push_str(&records.join(","));
                data.push_str("]}");
            }
            let event = Event::default().event("tick").data(data);
            Some((Ok(event), (app, live, tap, since, false)))
        },
    )
}
