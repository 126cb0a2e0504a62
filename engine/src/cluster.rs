//! Cluster connections: Weir connects the processes of a cluster itself, with an authenticated
//! handshake, and hands the sockets to timely (`initialize_networking_from_sockets`), instead of
//! timely's own handshake, which takes the first connection that names a process index as that
//! process.
//!
//! As in timely, process `i` connects to every process `j < i` and accepts connections from
//! every `j > i` on its own address. Each connection is authenticated both ways with a secret
//! the processes share, by challenge and response (HMAC-SHA256 over fresh random nonces, the
//! two indices and the cluster size): the secret never crosses the network, and a recorded
//! handshake cannot be replayed. The acceptor handles each incoming connection on a thread of
//! its own with a time limit, so a stranger who connects and closes, stays silent, sends
//! garbage or claims another process's index is dropped (and logged) without disturbing the
//! cluster; once every process has joined, the listener is closed.
//!
//! Not protected: the data exchanged after the handshake is not encrypted, and a stranger who
//! can read or alter traffic between the processes (on the path between them) is not kept out.
//!
//! ```
//! use weir_engine::cluster::{connect, Secret};
//!
//! let ports: Vec<u16> = (0..2)
//!     .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
//!     .collect();
//! let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
//! let secret = Secret::new(b"correct horse battery staple".to_vec());
//! let (a, s) = (addresses.clone(), secret.clone());
//! let one = std::thread::spawn(move || connect(&a, 1, &s).unwrap());
//! let zero = connect(&addresses, 0, &secret).unwrap();
//! let one = one.join().unwrap();
//! assert!(zero[0].is_none() && zero[1].is_some());
//! assert!(one[0].is_some() && one[1].is_none());
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The environment variable that holds the cluster secret.
pub const SECRET_VAR: &str = "WEIR_CLUSTER_SECRET";

/// The file, beside the hostfile, that holds the cluster secret.
pub const SECRET_FILE: &str = "cluster.key";

/// How long one handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const MAGIC: &[u8; 15] = b"WEIR-CLUSTER-1\n";
const NONCE: usize = 32;
const MAC: usize = 32;
/// Handshakes served at once; more incoming connections wait in the backlog.
const MAX_PENDING: usize = 32;

/// The secret the processes of a cluster share.
#[derive(Clone)]
pub struct Secret(Arc<[u8]>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A secret from its bytes.
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes.into())
    }

    /// The secret from `WEIR_CLUSTER_SECRET`, else from `cluster.key` beside the hostfile;
    /// `None` when neither is there. A secret shorter than 16 bytes is refused.
    pub fn find(hostfile: Option<&Path>) -> Result<Option<Secret>, String> {
        let (text, from) = match std::env::var(SECRET_VAR) {
            Ok(v) if !v.trim().is_empty() => (v, SECRET_VAR.to_string()),
            _ => {
                let Some(dir) = hostfile.map(|h| h.parent().unwrap_or(Path::new("."))) else {
                    return Ok(None);
                };
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                let path = dir.join(SECRET_FILE);
                match std::fs::read_to_string(&path) {
                    Ok(t) => (t, path.display().to_string()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
                }
            }
        };
        let secret = text.trim().as_bytes().to_vec();
        if secret.len() < 16 {
            return Err(format!(
                "the cluster secret in {from} is {} bytes: use at least 16\n  help: generate one with `head -c 32 /dev/urandom | base64`",
                secret.len()
            ));
        }
        Ok(Some(Secret::new(secret)))
    }

    fn mac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key");
        for p in parts {
            m.update(&(p.len() as u32).to_be_bytes());
            m.update(p);
        }
        m
    }
}

/// Fresh random bytes.
fn nonce() -> std::io::Result<[u8; NONCE]> {
    let mut n = [0u8; NONCE];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut n)?;
    Ok(n)
}

/// A fresh random secret, as text (64 hex digits), for processes started together.
pub fn random_secret() -> std::io::Result<String> {
    Ok(nonce()?.iter().map(|b| format!("{b:02x}")).collect())
}

fn index_bytes(i: usize) -> [u8; 4] {
    (i as u32).to_be_bytes()
}

/// Connects process `me` to every other process of the cluster at `addresses`: the result has
/// a stream to each other process, in order, and `None` at `me`. Waits until every process has
/// joined; fails at once if another process refuses this one's proof (a different secret).
pub fn connect(
    addresses: &[String],
    me: usize,
    secret: &Secret,
) -> Result<Vec<Option<TcpStream>>, String> {
    let n = addresses.len();
    let listener = if me + 1 < n {
        Some(TcpListener::bind(&addresses[me]).map_err(|e| {
            format!(
                "process {me} cannot listen on {}: {e} (choose another address in the hostfile, or stop what uses it)",
                addresses[me]
            )
        })?)
    } else {
        None
    };
    // Connect to the processes before this one while accepting the ones after it.
    let lower = {
        let (addresses, secret) = (addresses.to_vec(), secret.clone());
        std::thread::Builder::new()
            .name("weir-cluster-connect".into())
            .spawn(move || -> Result<Vec<TcpStream>, String> {
                (0..me)
                    .map(|j| connect_to(&addresses[j], me, j, addresses.len(), &secret))
                    .collect()
            })
            .map_err(|e| e.to_string())?
    };
    let mut higher: Vec<Option<TcpStream>> = (me + 1..n).map(|_| None).collect();
    if let Some(listener) = listener {
        accept_all(&listener, me, n, secret, &mut higher)?;
    }
    let lower = lower
        .join()
        .map_err(|_| "the cluster connection thread failed".to_string())??;
    let mut all: Vec<Option<TcpStream>> = lower.into_iter().map(Some).collect();
    all.push(None);
    all.extend(higher);
    for s in all.iter().flatten() {
        let _ = s.set_read_timeout(None);
        let _ = s.set_write_timeout(None);
        let _ = s.set_nodelay(true);
    }
    Ok(all)
}

/// Connects to process `j`, retrying (every second) until it answers and proves itself.
fn connect_to(
    address: &str,
    me: usize,
    j: usize,
    n: usize,
    secret: &Secret,
) -> Result<TcpStream, String> {
    let mut said = false;
    loop {
        let attempt = TcpStream::connect(address)
            .map_err(|e| Attempt::Retry(e.to_string()))
            .and_then(|s| handshake_out(s, me, j, n, secret));
        match attempt {
            Ok(s) => return Ok(s),
            Err(Attempt::Refused(why)) => {
                return Err(format!(
                    "process {j} at {address} refused this process ({me}): {why}\n  help: every process needs the same secret ({SECRET_VAR}, or {SECRET_FILE} beside the hostfile)"
                ))
            }
            Err(Attempt::Retry(why)) => {
                if !said {
                    eprintln!(
                        "weir: process {me}: waiting for process {j} at {address} ({why}); retrying every second"
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

enum Attempt {
    /// The other side is not there yet, or is not a Weir process: try again.
    Retry(String),
    /// A Weir process refused this one's proof.
    Refused(String),
}

/// The connecting side: answers the challenge, then checks the acceptor's proof.
fn handshake_out(
    mut s: TcpStream,
    me: usize,
    j: usize,
    n: usize,
    secret: &Secret,
) -> Result<TcpStream, Attempt> {
    let retry = |e: std::io::Error| Attempt::Retry(e.to_string());
    s.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(retry)?;
    s.set_write_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(retry)?;
    let mut hello = [0u8; 15 + NONCE + 8];
    s.read_exact(&mut hello).map_err(retry)?;
    if &hello[..15] != MAGIC {
        return Err(Attempt::Retry(
            "what answers there is not a Weir process".into(),
        ));
    }
    let nonce_a = &hello[15..15 + NONCE];
    let (their_index, their_n) = (&hello[15 + NONCE..15 + NONCE + 4], &hello[15 + NONCE + 4..]);
    if their_index != index_bytes(j) || their_n != index_bytes(n) {
        return Err(Attempt::Refused(format!(
            "it is process {} of {}, not process {j} of {n}: check that every process has the same hostfile",
            u32::from_be_bytes(their_index.try_into().expect("4 bytes")),
            u32::from_be_bytes(their_n.try_into().expect("4 bytes")),
        )));
    }
    let nonce_c = nonce().map_err(retry)?;
    let proof = secret
        .mac(&[
            b"connect",
            nonce_a,
            &nonce_c,
            &index_bytes(me),
            &index_bytes(j),
            &index_bytes(n),
        ])
        .finalize()
        .into_bytes();
    let mut msg = Vec::with_capacity(15 + 4 + NONCE + MAC);
    msg.extend_from_slice(MAGIC);
    msg.extend_from_slice(&index_bytes(me));
    msg.extend_from_slice(&nonce_c);
    msg.extend_from_slice(&proof);
    s.write_all(&msg).map_err(retry)?;
    let mut status = [0u8; 1];
    s.read_exact(&mut status).map_err(retry)?;
    if status[0] != 1 {
        let mut why = String::new();
        let _ = (&mut s).take(200).read_to_string(&mut why);
        return Err(Attempt::Refused(why.trim().to_string()));
    }
    let mut theirs = [0u8; MAC];
    s.read_exact(&mut theirs).map_err(retry)?;
    secret
        .mac(&[
            b"accept",
            &nonce_c,
            nonce_a,
            &index_bytes(j),
            &index_bytes(me),
            &index_bytes(n),
        ])
        .verify_slice(&theirs)
        .map_err(|_| {
            Attempt::Retry(format!(
                "what answers as process {j} cannot prove it holds the cluster secret"
            ))
        })?;
    Ok(s)
}

/// Accepts connections until every process after `me` has joined with a valid proof.
fn accept_all(
    listener: &TcpListener,
    me: usize,
    n: usize,
    secret: &Secret,
    higher: &mut [Option<TcpStream>],
) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<(std::net::SocketAddr, Result<(usize, TcpStream), String>)>();
    let pending = Arc::new(AtomicUsize::new(0));
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("process {me}: {e}"))?;
    while higher.iter().any(Option::is_none) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if pending.load(Ordering::Relaxed) >= MAX_PENDING {
                    eprintln!(
                        "weir: process {me}: dropped a cluster connection from {peer}: too many handshakes at once"
                    );
                    continue;
                }
                pending.fetch_add(1, Ordering::Relaxed);
                let (tx, secret, count) = (tx.clone(), secret.clone(), Arc::clone(&pending));
                let spawned = std::thread::Builder::new()
                    .name("weir-cluster-handshake".into())
                    .spawn(move || {
                        let r = handshake_in(stream, me, n, &secret);
                        count.fetch_sub(1, Ordering::Relaxed);
                        let _ = tx.send((peer, r));
                    });
                if spawned.is_err() {
                    pending.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("weir: process {me}: cannot accept a cluster connection ({e}); retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        while let Ok((peer, r)) = rx.try_recv() {
            match r {
                Ok((i, stream)) if higher[i - me - 1].is_none() => {
                    let _ = stream.set_nonblocking(false);
                    higher[i - me - 1] = Some(stream);
                }
                Ok((i, _)) => eprintln!(
                    "weir: process {me}: refused a second connection as process {i} from {peer}"
                ),
                Err(why) => {
                    eprintln!("weir: process {me}: refused a cluster connection from {peer}: {why}")
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The accepting side: challenges the connection, checks its proof, proves itself back.
fn handshake_in(
    mut s: TcpStream,
    me: usize,
    n: usize,
    secret: &Secret,
) -> Result<(usize, TcpStream), String> {
    let io = |e: std::io::Error| format!("the handshake failed: {e}");
    s.set_nonblocking(false).map_err(io)?;
    s.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(io)?;
    s.set_write_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(io)?;
    let nonce_a = nonce().map_err(io)?;
    let mut hello = Vec::with_capacity(15 + NONCE + 8);
    hello.extend_from_slice(MAGIC);
    hello.extend_from_slice(&nonce_a);
    hello.extend_from_slice(&index_bytes(me));
    hello.extend_from_slice(&index_bytes(n));
    s.write_all(&hello).map_err(io)?;
    let mut answer = [0u8; 15 + 4 + NONCE + MAC];
    s.read_exact(&mut answer).map_err(io)?;
    if &answer[..15] != MAGIC {
        return Err("it did not answer as a Weir process".into());
    }
    let i = u32::from_be_bytes(answer[15..19].try_into().expect("4 bytes")) as usize;
    let nonce_c = &answer[19..19 + NONCE];
    let proof = &answer[19 + NONCE..];
    let refuse = |mut s: TcpStream, why: String| -> Result<(usize, TcpStream), String> {
        let _ = s.write_all(&[0]);
        let _ = s.write_all(why.as_bytes());
        Err(why)
    };
    if i <= me || i >= n {
        return refuse(
            s,
            format!("it claims to be process {i}, which does not connect to process {me}"),
        );
    }
    let valid = secret
        .mac(&[
            b"connect",
            &nonce_a,
            nonce_c,
            &index_bytes(i),
            &index_bytes(me),
            &index_bytes(n),
        ])
        .verify_slice(proof)
        .is_ok();
    if !valid {
        return refuse(
            s,
            format!("it claims to be process {i} but does not prove it holds the cluster secret"),
        );
    }
    let mine = secret
        .mac(&[
            b"accept",
            nonce_c,
            &nonce_a,
            &index_bytes(me),
            &index_bytes(i),
            &index_bytes(n),
        ])
        .finalize()
        .into_bytes();
    s.write_all(&[1]).map_err(io)?;
    s.write_all(&mine).map_err(io)?;
    Ok((i, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                format!("127.0.0.1:{}", l.local_addr().unwrap().port())
            })
            .collect()
    }

    #[test]
    fn three_processes_connect_and_a_wrong_secret_is_refused() {
        let a = addresses(3);
        let s = Secret::new(b"0123456789abcdef".to_vec());
        let handles: Vec<_> = (1..3)
            .map(|i| {
                let (a, s) = (a.clone(), s.clone());
                std::thread::spawn(move || connect(&a, i, &s).map(|v| v.iter().flatten().count()))
            })
            .collect();
        assert_eq!(connect(&a, 0, &s).unwrap().iter().flatten().count(), 2);
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap(), 2);
        }

        let a = addresses(2);
        let wrong = Secret::new(b"fedcba9876543210".to_vec());
        let a1 = a.clone();
        let zero = std::thread::spawn(move || connect(&a1, 0, &s));
        let err = connect(&a, 1, &wrong).unwrap_err();
        assert!(
            err.contains("does not prove it holds the cluster secret"),
            "{err}"
        );
        drop(zero); // process 0 keeps waiting for a process 1 with the right secret
    }
}
