//! Test services written with the official Rust SDK, implementing the SDK conformance contract
//! (`TestUtilsService`, `Counter`, `Proxy`, `AwakeableHolder`, `BlockAndWaitWorkflow`,
//! `VirtualObjectCommandInterpreter`, the stateless `Failing` handlers) plus the test-only
//! `Recorder` and `Attacher`. Reprise's end-to-end tests register and call them like any user's deployment.
//!
//! Usage: `reprise-test-services [--variant default|breaking] [--listen ADDR] [--dir DIR]`.
//! The process listens on `ADDR` (default: a port the OS picks on 127.0.0.1) and prints
//! `listening on <address>` as its first line of output. The `breaking` variant offers
//! `TestUtilsService` with `echo` only: registered after the default variant, it is an
//! incompatible change. `--dir` is where `Recorder` writes its events.

mod awakeables;
mod collections;
mod counter;
mod failing;
mod interpreter;
mod nondeterministic;
mod proxy;
mod recorder;
mod sleeper;
mod test_utils;
mod workflows;

use std::io::Write;
use std::path::PathBuf;

use restate_sdk::prelude::*;

fn flag(name: &str) -> Option<String> {
    std::env::args().skip_while(|arg| arg != name).nth(1)
}

fn usage(message: &str) -> ! {
    eprintln!("{message}");
    eprintln!(
        "usage: reprise-test-services [--variant default|breaking] [--listen ADDR] [--dir DIR]"
    );
    std::process::exit(2);
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let variant = flag("--variant").unwrap_or_else(|| "default".to_owned());
    let listen = flag("--listen").unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let dir = flag("--dir").map(PathBuf::from);
    let endpoint = match variant.as_str() {
        "default" => Endpoint::builder()
            .bind(test_utils::TestUtilsService::default())
            .bind(counter::Counter)
            .bind(awakeables::AwakeableHolder)
            .bind(awakeables::AwakeableWaiter)
            .bind(proxy::Proxy)
            .bind(nondeterministic::NonDeterministic)
            .bind(collections::ListObject)
            .bind(collections::MapObject)
            .bind(sleeper::Sleeper::new(dir.clone()))
            .bind(failing::Failing::default())
            .bind(recorder::Recorder::new(dir))
            .bind(workflows::BlockAndWaitWorkflow)
            .bind(workflows::Attacher)
            .bind(interpreter::VirtualObjectCommandInterpreter)
            .build(),
        "breaking" => Endpoint::builder()
            .bind(test_utils::TestUtilsServiceEchoOnly)
            .build(),
        other => usage(&format!(
            "unknown variant `{other}`: use default or breaking"
        )),
    };
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(listener) => listener,
        Err(err) => usage(&format!("cannot listen on {listen}: {err}")),
    };
    let address = listener.local_addr()?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {address}")?;
    stdout.flush()?;
    HttpServer::new(endpoint).serve(listener).await;
    Ok(())
}
