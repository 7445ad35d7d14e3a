//! Invocation streams spread over several HTTP/2 connections per deployment. One connection
//! carries at most as many streams as its peer allows (`SETTINGS_MAX_CONCURRENT_STREAMS`,
//! often 100 to 250); past that, hyper queues new streams until old ones end — and an
//! invocation stream can stay open for the whole inactivity timeout. So the client keeps
//! *lanes*, each its own pool with its own connection to every deployment, counts the open
//! streams per lane and deployment, and opens a new lane when every lane is at
//! [`STREAMS_PER_CONNECTION`] for the deployment.
//!
//! Every connection is also pinged while it is open; one that stops answering is closed, and
//! the next request opens a fresh one.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::uri::Authority;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::quick_ack::QuickAckConnector;
use crate::{RequestBody, SendError};

/// Streams a lane's connection to one deployment carries before another lane is used: at or
/// under what common SDK servers allow (hypercorn and Node: 100; hyper: 200).
pub const STREAMS_PER_CONNECTION: usize = 100;
/// Most lanes: connections per deployment.
const MAX_LANES: usize = 64;
/// A quiet connection is pinged this often, and closed when a ping is not answered in as long.
const KEEP_ALIVE: Duration = Duration::from_secs(20);

type Lane = Client<QuickAckConnector, RequestBody>;

pub(crate) struct Lanes {
    connector: QuickAckConnector,
    state: Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    lanes: Vec<Lane>,
    /// Open streams per (lane, deployment authority).
    open: HashMap<(usize, Authority), usize>,
}

impl Lanes {
    pub(crate) fn new(connector: QuickAckConnector) -> Arc<Self> {
        Arc::new(Self {
            connector,
            state: Mutex::new(LaneState::default()),
        })
    }

    fn lane(&self) -> Lane {
        Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(TokioTimer::new())
            .http2_keep_alive_interval(KEEP_ALIVE)
            .http2_keep_alive_timeout(KEEP_ALIVE)
            .http2_keep_alive_while_idle(true)
            .build(self.connector.clone())
    }

    /// The lane for a new stream to `authority`: the least busy one, or a new one when all are
    /// full. The stream is counted until the returned guard drops.
    fn pick(self: &Arc<Self>, authority: &Authority) -> (Lane, OpenStream) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let busiest_allowed = STREAMS_PER_CONNECTION;
        let least = (0..state.lanes.len())
            .map(|lane| {
                let open = state
                    .open
                    .get(&(lane, authority.clone()))
                    .copied()
                    .unwrap_or(0);
                (open, lane)
            })
            .min();
        let index = match least {
            Some((open, lane)) if open < busiest_allowed || state.lanes.len() >= MAX_LANES => lane,
            _ => {
                let lane = self.lane();
                state.lanes.push(lane);
                state.lanes.len() - 1
            }
        };
        *state.open.entry((index, authority.clone())).or_default() += 1;
        let lane = state.lanes[index].clone();
        drop(state);
        (
            lane,
            OpenStream(Some((self.clone(), (index, authority.clone())))),
        )
    }

    pub(crate) async fn send(
        self: &Arc<Self>,
        request: Request<RequestBody>,
    ) -> Result<http::Response<ResponseBody>, SendError> {
        let authority = request
            .uri()
            .authority()
            .cloned()
            .unwrap_or_else(|| Authority::from_static("localhost"));
        let (lane, open) = self.pick(&authority);
        let response = lane.request(request).await?;
        Ok(response.map(|body| ResponseBody { body, _open: open }))
    }
}

/// Counts one open stream while it lives (`None`: a stream nobody counts).
pub(crate) struct OpenStream(Option<(Arc<Lanes>, (usize, Authority))>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        let Some((lanes, key)) = self.0.take() else {
            return;
        };
        let mut state = lanes.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = state.open.get_mut(&key) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                state.open.remove(&key);
            }
        }
    }
}

/// A response body that keeps its stream counted until it is dropped.
pub struct ResponseBody {
    body: Incoming,
    _open: OpenStream,
}

impl ResponseBody {
    /// A body whose stream is not counted (TLS deployments: their pool multiplexes alone).
    pub(crate) fn untracked(body: Incoming) -> Self {
        Self {
            body,
            _open: OpenStream(None),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
