//! The TCP ports a child process listens on, read from `/proc`: a server such as Prometheus
//! or Alertmanager started with `--web.listen-address=127.0.0.1:0` takes a port of its own
//! choosing and does not say which; this finds it, so no test picks a port by binding,
//! dropping and hoping it stays free.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Child;
use std::time::Duration;

/// The IPv4 addresses on which process `pid` has a listening TCP socket (empty when it has
/// none yet, or is gone).
pub fn listening(pid: u32) -> Vec<SocketAddr> {
    let inodes = socket_inodes(pid);
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    listening_in(&table, &inodes)
}

/// Waits for the one port `child` listens on, then until it answers `GET /-/ready`; returns
/// its address. Panics with `log()` if the child exits first.
pub async fn wait_ready(child: &mut Child, what: &str, log: impl Fn() -> String) -> SocketAddr {
    let pid = child.id();
    let addr = crate::eventually_async(
        &format!("{what} listening"),
        Duration::from_secs(30),
        || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("{what} exited with {status}:\n{}", log());
            }
            let ports = listening(pid);
            std::future::ready(match ports[..] {
                [addr] => Ok(addr),
                _ => Err(format!("listening on {ports:?}")),
            })
        },
    )
    .await;
    crate::eventually_async(
        &format!("{what} on {addr} ready"),
        Duration::from_secs(30),
        || crate::answers(addr, "/-/ready"),
    )
    .await;
    addr
}

/// The inodes of the sockets among the open files of `pid`.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    dir.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// The listening sockets (state `0A`) of a `/proc/net/tcp` table whose inode is in `inodes`.
pub(crate) fn listening_in(table: &str, inodes: &HashSet<u64>) -> Vec<SocketAddr> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            if *state != LISTEN || !inodes.contains(&inode.parse().ok()?) {
                return None;
            }
            let (ip, port) = local.split_once(':')?;
            // The kernel prints the address as a number in the host's byte order.
            let ip = Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_ne_bytes());
            Some(SocketAddr::from((ip, u16::from_str_radix(port, 16).ok()?)))
        })
        .collect()
}
