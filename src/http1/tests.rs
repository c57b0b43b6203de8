//! The engine's memory per idle connection.

use std::sync::Arc;

use super::conn::IdleState;
use crate::config::{Config, ListenerSlot};
use crate::http::ConnContext;
use crate::snapshot::Live;
use crate::splice::Forwarding;

/// Issue 17 item 3: a keep-alive connection waiting for its next request holds this state
/// (its socket, its context handle and its shutdown receiver) and no buffer; the task around
/// it adds the future's own few words. hyper held two 16 KiB buffers here.
#[test]
fn idle_connection_state_is_small() {
    let size = std::mem::size_of::<IdleState<tokio::net::TcpStream>>();
    println!("idle HTTP/1 connection state: {size} bytes (TcpStream)");
    assert!(size <= 128, "{size} bytes");
}

/// The whole future a plain HTTP/1 connection's task holds (its state while it waits on the
/// task included: the timer and the shutdown wait kept for its life, the wait for the next
/// bytes), which sets the task's allocation with tokio's header beside it. A connection
/// quiet for `park::PARK_AFTER` holds none of it (parked: its entry, printed by
/// `a_parked_entry_is_small`). Bounded so a change that grows it much (a rare path left
/// inline) is seen.
#[tokio::test]
async fn the_connection_future_is_small() {
    const CONFIG: &str = "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\npool = \"p\"\n\
                          [[pool]]\nname = \"p\"\nbackends = [{ address = \"127.0.0.1:1\" }]\n";
    let config = Config::from_toml(CONFIG, std::path::Path::new("t.toml")).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let cx = Arc::new(ConnContext {
        shared: Arc::new(Live::new(&config, false, Forwarding::Copy)),
        listener: ListenerSlot::new(0),
        peer: addr,
        proto: "http",
        client_cert: None,
        held: None,
    });
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let future = super::serve(stream, cx, shutdown, None);
    let size = std::mem::size_of_val(&future);
    println!("HTTP/1 connection future: {size} bytes (TcpStream)");
    // 1,136 bytes in a debug build (rustc 1.95; 1,088 before parking's deadline and checks);
    // the bound leaves a compiler update room and still catches a rare path left inline
    // (hundreds of bytes).
    assert!(size <= 1280, "{size} bytes");
}
