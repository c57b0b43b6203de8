//! TCP throughput for the README's layer-4 figures: `sink ADDR` discards what it receives and
//! answers each connection's EOF with one byte; `send ADDR TOTAL_MIB CONNS` spreads TOTAL_MIB
//! over CONNS connections and prints MiB/s from first byte to the last acknowledgement (so the
//! time covers delivery to the sink, through any proxy in between, including its half-close).

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("sink") => sink(&args[2]).await,
        Some("send") => {
            let mib: usize = args[3].parse().unwrap();
            let conns: usize = args[4].parse().unwrap();
            send(&args[2], mib, conns).await;
        }
        _ => eprintln!("usage: tcp_bench sink ADDR | send ADDR TOTAL_MIB CONNS"),
    }
}

async fn sink(addr: &str) {
    let listener = TcpListener::bind(addr).await.unwrap();
    loop {
        let (mut s, _) = listener.accept().await.unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
            let _ = s.write_all(b"k").await;
        });
    }
}

async fn send(addr: &str, mib: usize, conns: usize) {
    let per = (mib << 20) / conns;
    let started = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let addr = addr.to_string();
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let chunk = vec![7u8; 256 * 1024];
                let mut left = per;
                while left > 0 {
                    let n = left.min(chunk.len());
                    s.write_all(&chunk[..n]).await.unwrap();
                    left -= n;
                }
                s.shutdown().await.unwrap();
                let mut ack = [0u8; 1];
                s.read_exact(&mut ack).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{:.0} MiB/s ({mib} MiB over {conns} connections in {secs:.2} s)",
        mib as f64 / secs
    );
}
