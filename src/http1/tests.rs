//! The engine's memory per idle connection.

use super::conn::IdleState;

/// Issue 17 item 3: a keep-alive connection waiting for its next request holds this state
/// (its socket, its context handle and its shutdown receiver) and no buffer; the task around
/// it adds the future's own few words. hyper held two 16 KiB buffers here.
#[test]
fn idle_connection_state_is_small() {
    let size = std::mem::size_of::<IdleState<tokio::net::TcpStream>>();
    println!("idle HTTP/1 connection state: {size} bytes (TcpStream)");
    assert!(size <= 128, "{size} bytes");
}
