//! The node channel against hostile bytes: gRPC requests to every read-only and raft method of
//! the node port, with random payloads, truncated frames, frames that declare more than they
//! carry or far more than the limit, and messages addressed to another cluster or node. None may
//! panic or stop the node; each gets a gRPC error, and the node stays healthy and keeps serving.

use reprise_e2e::{NodeSpec, ctl};

const METHODS: [&str; 6] = [
    "/reprise.net.v1.Raft/AppendEntries",
    "/reprise.net.v1.Raft/Vote",
    "/reprise.net.v1.Raft/InstallSnapshot",
    "/reprise.net.v1.Metadata/Get",
    "/reprise.net.v1.Metadata/Members",
    "/reprise.net.v1.Node/Status",
];

/// A deterministic stream of bytes (xorshift), so a failure can be replayed.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 as u8
    }

    fn take(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next()).collect()
    }
}

/// A gRPC frame: uncompressed flag, the declared length, then `payload`.
fn frame(declared: u32, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8];
    body.extend_from_slice(&declared.to_be_bytes());
    body.extend_from_slice(payload);
    body
}

/// A protobuf field: key, length, bytes.
fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![
        number << 3 | 2,
        u8::try_from(bytes.len()).unwrap_or(u8::MAX),
    ];
    out.extend_from_slice(bytes);
    out
}

#[tokio::test]
async fn random_and_misaddressed_bytes_never_stop_a_node() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut node = NodeSpec::new(tmp.path(), "n1").spawn()?;
    let address = node.wait_ready().await?.node;
    let client = reqwest::Client::builder().http2_prior_knowledge().build()?;
    let mut random = Bytes(0x1234_5678_9abc_def1);

    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for len in [0usize, 1, 3, 5, 17, 64, 300, 4096] {
        // Garbage, a frame of garbage, a frame that declares more than it carries.
        bodies.push(random.take(len));
        let payload = random.take(len);
        bodies.push(frame(u32::try_from(len).unwrap_or(0), &payload));
        bodies.push(frame(u32::try_from(len).unwrap_or(0) + 100, &payload));
    }
    // A frame declaring 1 GiB: refused from its header, nothing allocated for it.
    bodies.push(frame(1 << 30, &random.take(16)));
    // Well-formed messages for another cluster, and for another node of this one.
    let header = |cluster: &str, receiver_id: u8| {
        let mut receiver = vec![0x08, receiver_id];
        receiver.extend_from_slice(&[0x10, 1]);
        let mut header = field(1, cluster.as_bytes());
        header.extend(field(3, &receiver));
        field(1, &header)
    };
    for (cluster, receiver) in [("another-cluster", 1u8), ("localcluster", 7)] {
        let message = header(cluster, receiver);
        bodies.push(frame(u32::try_from(message.len()).unwrap_or(0), &message));
    }

    for method in METHODS {
        for body in &bodies {
            let response = client
                .post(format!("http://{address}{method}"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(body.clone())
                .send()
                .await?;
            let status = response.status().as_u16();
            let grpc_status = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            // Errors come as trailers-only responses: the status is in the headers.
            let _ = response.bytes().await;
            assert!(
                status == 200 || status == 400,
                "{method} with {} bytes answered HTTP {status}",
                body.len()
            );
            if let Some(code) = grpc_status {
                assert_ne!(code, "0", "{method} accepted {} random bytes", body.len());
            }
        }
        let (health, _) = node.node_health().await?;
        assert_eq!(health, 200, "the node is unhealthy after {method}");
    }

    // Still the same node, and still serving its cluster.
    let status = ctl(&format!("http://{address}"), &["--json", "nodes", "list"]).await?;
    assert_eq!(status.code, Some(0), "{status:?}");
    assert_eq!(status.json()?[0]["alive"], true, "{status:?}");
    let logs = node.logs();
    assert!(!logs.contains("panicked"), "the node panicked:\n{logs}");
    assert!(
        logs.contains("refused a message") && logs.contains("another-cluster"),
        "misaddressed messages are logged"
    );
    Ok(())
}
