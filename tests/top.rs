//! `weir top` against a live proxy: `--once` prints one frame, without terminal control, from
//! two metrics samples over the command socket, with the clusters, their backends up or down,
//! and a nonzero request rate while traffic flows. Interactively, in a pseudo-terminal that is
//! its controlling terminal (as in a real shell), it redraws on the alternate screen with the
//! rate following the traffic, quits on `q` or Ctrl-C with status 0, and leaves the terminal
//! as it found it: main screen, cursor shown, line mode and echo back.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod util;

use std::fs::File;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::pty::openpty;
use nix::sys::termios::{tcgetattr, LocalFlags};
use util::control::wait_exit;
use util::{proxy_on_yaml, weir_bin, Desired, Proxy};
use weir_testkit::{dead_addr, http_get, wait_until, Backend};

/// A proxy with the cluster `shop` (`blue-1` up, `gone-2` refusing) behind `shop.test`, and
/// the cluster `quiet` with no backend; returned once `shop.test` answers.
fn shop() -> (Desired, Proxy, SocketAddr, Backend) {
    let blue = Backend::start("blue-1");
    let dead = dead_addr();
    let yaml = [
        "listeners:",
        "  - name: web",
        "    address: 127.0.0.1:{port}",
        "    protocol: http",
        "clusters:",
        "  - id: shop",
        "    backends:",
        &format!("      - {{ id: blue-1, address: \"{}\" }}", blue.addr),
        &format!("      - {{ id: gone-2, address: \"{dead}\" }}"),
        "  - id: quiet",
        "frontends:",
        "  - listener: web",
        "    hostname: shop.test",
        "    cluster: shop",
    ]
    .join("\n");
    let (desired, proxy, addr) = proxy_on_yaml(&yaml, None);
    assert!(wait_until(Duration::from_secs(20), || {
        http_get(addr, "shop.test", "/").is_ok_and(|a| a.status == 200)
    }));
    (desired, proxy, addr, blue)
}

/// Traffic to `shop.test` until `done` is set: bounded in count and in time. Returns how many
/// requests it sent.
fn traffic(addr: SocketAddr, done: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut sent = 0;
        while !done.load(Ordering::SeqCst) && Instant::now() < deadline && sent < 5_000 {
            let _ = http_get(addr, "shop.test", "/");
            sent += 1;
        }
        sent
    })
}

#[test]
fn top_once_shows_clusters_backends_up_or_down_and_the_rate_of_live_traffic() {
    let (_desired, proxy, addr, _blue) = shop();
    // Traffic while top samples, stopped once top is done.
    let done = Arc::new(AtomicBool::new(false));
    let traffic = traffic(addr, done.clone());
    let out = proxy.weir(&["top", "--once", "--interval", "1s"]);
    done.store(true, Ordering::SeqCst);
    assert!(traffic.join().unwrap() > 0);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains('\x1b'),
        "no terminal control with --once:\n{text}"
    );
    let shop = text
        .lines()
        .find(|l| l.starts_with("shop "))
        .unwrap_or_else(|| panic!("no shop line:\n{text}"));
    let rps: f64 = shop.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(rps > 0.0, "{text}");
    assert!(shop.ends_with("1/2 up"), "{text}");
    let backend = |id: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no {id} line:\n{text}"))
            .to_owned()
    };
    assert!(backend("blue-1").contains(" up "), "{text}");
    // The dead backend is marked down once a worker failed to connect to it (requests are
    // spread over both, so some tried it during the traffic).
    assert!(backend("gone-2").contains(" down "), "{text}");
    assert!(text.lines().any(|l| l.starts_with("quiet ")), "{text}");
}

/// What `weir top` running in a pseudo-terminal has written so far.
struct Screen {
    output: Arc<Mutex<Vec<u8>>>,
}

impl Screen {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// The frames drawn so far: what follows each "home, clear screen".
    fn frames(&self) -> Vec<String> {
        let text = self.text();
        text.split("\x1b[H\x1b[2J")
            .skip(1)
            .map(|f| f.replace("\r\n", "\n"))
            .collect()
    }

    /// The `shop` cluster's requests per second in each frame drawn so far.
    fn shop_rates(&self) -> Vec<f64> {
        self.frames()
            .iter()
            .filter_map(|f| {
                let line = f.lines().find(|l| l.starts_with("shop "))?;
                line.split_whitespace().nth(1)?.parse().ok()
            })
            .collect()
    }
}

/// Runs `weir top --interval 400ms` against `proxy` in a new pseudo-terminal, made its
/// controlling terminal by `setsid --ctty` (so a Ctrl-C the terminal turned into SIGINT would
/// reach it, as in a shell). Returns the child, the terminal's side the child has (for its
/// mode), the side a user types into, and what the child draws.
fn top_in_a_pty(proxy: &Proxy) -> (std::process::Child, OwnedFd, File, Screen) {
    let pty = openpty(None, None).unwrap();
    let child = Command::new("setsid")
        .args(["--ctty", "--wait"])
        .arg(weir_bin())
        .args(["top", "--interval", "400ms", "--socket", proxy.socket_str()])
        .env_remove("WEIR_SOCKET")
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave.try_clone().unwrap()))
        .spawn()
        .unwrap();
    let master = File::from(pty.master);
    let output = Arc::new(Mutex::new(Vec::new()));
    {
        // Reads until every copy of the other side is closed (EIO), so the child never
        // blocks on a full terminal.
        let (mut reader, output) = (master.try_clone().unwrap(), output.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                output.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
    }
    (child, pty.slave, master, Screen { output })
}

/// Types `key` into the terminal and checks `weir top` exits 0 and restores the terminal:
/// the alternate screen left and the cursor shown after they were entered and hidden, and the
/// mode the terminal had before (line editing, echo, signals).
fn quit_with(
    key: &[u8],
    child: &mut std::process::Child,
    slave: &OwnedFd,
    keyboard: &mut File,
    screen: &Screen,
) {
    let before = tcgetattr(slave).unwrap();
    keyboard.write_all(key).unwrap();
    let status = wait_exit(child, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("weir top did not quit on {key:?}:\n{}", screen.text()));
    assert!(status.success(), "{status:?}:\n{}", screen.text());
    // Top wrote its closing sequences before it exited, but the reader thread may not have
    // taken them from the pty yet: wait (bounded) for them to arrive, then check.
    let restored = |text: &str| {
        let last = |pattern: &str| text.rfind(pattern);
        last("\x1b[?1049l") > last("\x1b[?1049h") && last("\x1b[?25h") > last("\x1b[?25l")
    };
    wait_until(Duration::from_secs(5), || restored(&screen.text()));
    let text = screen.text();
    let last = |pattern: &str| text.rfind(pattern);
    assert!(
        last("\x1b[?1049h").is_some(),
        "never entered the alternate screen:\n{text}"
    );
    assert!(
        last("\x1b[?1049l") > last("\x1b[?1049h"),
        "alternate screen left open:\n{text}"
    );
    assert!(
        last("\x1b[?25h") > last("\x1b[?25l"),
        "cursor left hidden:\n{text}"
    );
    let after = tcgetattr(slave).unwrap();
    // While top ran the terminal was raw; it must be back to what the pty started with.
    let cooked = LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG;
    assert!(
        !before.local_flags.contains(cooked),
        "top never set raw mode"
    );
    assert!(
        after.local_flags.contains(cooked),
        "{:?}",
        after.local_flags
    );
}

#[test]
fn top_in_a_terminal_redraws_with_the_rate_following_traffic_and_q_restores_the_terminal() {
    let (_desired, proxy, addr, _blue) = shop();
    let done = Arc::new(AtomicBool::new(false));
    let sender = traffic(addr, done.clone());
    let (mut child, slave, mut keyboard, screen) = top_in_a_pty(&proxy);
    let cooked = tcgetattr(&slave).unwrap();
    // A frame with traffic flowing...
    let busy = wait_until(Duration::from_secs(20), || {
        screen.shop_rates().iter().any(|&r| r > 0.0)
    });
    done.store(true, Ordering::SeqCst);
    assert!(sender.join().unwrap() > 0);
    assert!(busy, "no frame with a rate:\n{}", screen.text());
    // ...then, redrawn, one after it stopped: the rate changed on screen.
    assert!(
        wait_until(Duration::from_secs(20), || {
            let rates = screen.shop_rates();
            let first_busy = rates.iter().position(|&r| r > 0.0);
            first_busy.is_some_and(|i| rates[i..].contains(&0.0))
        }),
        "the rate never fell back to 0: {:?}\n{}",
        screen.shop_rates(),
        screen.text()
    );
    let frames = screen.frames();
    assert!(frames.len() >= 2);
    let last = frames.last().unwrap();
    assert!(last.contains("CLUSTER"), "{last}");
    assert!(last.lines().any(|l| l.starts_with("quiet ")), "{last}");
    quit_with(b"q", &mut child, &slave, &mut keyboard, &screen);
    assert_eq!(tcgetattr(&slave).unwrap().local_flags, cooked.local_flags);
}

#[test]
fn ctrl_c_in_the_terminal_quits_top_cleanly_with_status_0() {
    let (_desired, proxy, _addr, _blue) = shop();
    let (mut child, slave, mut keyboard, screen) = top_in_a_pty(&proxy);
    assert!(
        wait_until(Duration::from_secs(20), || !screen.frames().is_empty()),
        "no frame:\n{}",
        screen.text()
    );
    // 0x03 is what the key sends; were the terminal still turning it into SIGINT, top would
    // die of it without restoring anything.
    quit_with(&[0x03], &mut child, &slave, &mut keyboard, &screen);
}
