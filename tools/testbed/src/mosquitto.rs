//! Runs Debian's mosquitto as a child process on a free port, optionally with a TLS
//! listener; it can be stopped and restarted on the same ports to simulate broker outages.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// TLS material for a listener: PEM files on disk.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server certificate.
    pub cert: PathBuf,
    /// The server key.
    pub key: PathBuf,
}

/// A mosquitto process.
pub struct Mosquitto {
    /// Plain listener port.
    pub port: u16,
    /// TLS listener port, if configured.
    pub tls_port: Option<u16>,
    /// A listener that demands a username and password from a password file, if configured
    /// ([`Mosquitto::start_with_passwords`]); the plain listener stays anonymous (subscribers).
    pub auth_port: Option<u16>,
    passwords: Option<PathBuf>,
    conf: PathBuf,
    child: Option<Child>,
}

/// Where the mosquitto binary is (`/usr/sbin/mosquitto` on Debian), if installed.
pub fn binary() -> Option<PathBuf> {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"].iter().map(PathBuf::from).find(|p| p.exists())
}

impl Mosquitto {
    /// Starts mosquitto with a config in `dir`; `tls` adds a TLS listener. Sessions persist
    /// in `dir` across a graceful restart ([`Mosquitto::stop_gracefully`]).
    pub fn start(dir: &Path, tls: Option<&TlsFiles>) -> std::io::Result<Mosquitto> {
        let port = crate::free_port()?;
        let tls_port = match tls {
            Some(_) => Some(crate::free_port()?),
            None => None,
        };
        let conf = dir.join("mosquitto.conf");
        let mut f = std::fs::File::create(&conf)?;
        // set_tcp_nodelay: with mosquitto's default (Nagle on) a burst of PUBACKs waits for the
        // client's delayed ACK, 40 ms a burst on loopback: off, so that timings are the SDK's.
        writeln!(
            f,
            "user root\nper_listener_settings false\nallow_anonymous true\nmax_inflight_messages 200\nmax_queued_messages 100000\nset_tcp_nodelay true"
        )?;
        writeln!(f, "persistence true\npersistence_location {}/\nlog_dest file {}/mosquitto.log", dir.display(), dir.display())?;
        writeln!(f, "listener {port} 127.0.0.1")?;
        if let (Some(t), Some(p)) = (tls, tls_port) {
            writeln!(f, "listener {p} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}", t.ca.display(), t.cert.display(), t.key.display())?;
        }
        let mut m = Mosquitto { port, tls_port, auth_port: None, passwords: None, conf, child: None };
        m.restart()?;
        Ok(m)
    }

    /// Starts mosquitto with its plain listener anonymous and a second one (`auth_port`) that
    /// accepts only `users` (name, password), from a password file [`Mosquitto::set_password`]
    /// changes under it.
    pub fn start_with_passwords(dir: &Path, users: &[(&str, &str)]) -> std::io::Result<Mosquitto> {
        let (port, auth_port) = (crate::free_port()?, crate::free_port()?);
        let passwords = dir.join("passwords");
        std::fs::write(&passwords, "")?;
        let conf = dir.join("mosquitto.conf");
        let mut f = std::fs::File::create(&conf)?;
        writeln!(f, "user root\nper_listener_settings true\nmax_inflight_messages 200\nmax_queued_messages 100000\nset_tcp_nodelay true")?;
        writeln!(f, "log_dest file {}/mosquitto.log", dir.display())?;
        writeln!(f, "listener {port} 127.0.0.1\nallow_anonymous true")?;
        writeln!(f, "listener {auth_port} 127.0.0.1\nallow_anonymous false\npassword_file {}", passwords.display())?;
        let mut m = Mosquitto { port, tls_port: None, auth_port: Some(auth_port), passwords: Some(passwords), conf, child: None };
        for (user, password) in users {
            m.write_password(user, password)?;
        }
        m.restart()?;
        for p in [auth_port] {
            if !crate::wait_for_port(p, Duration::from_secs(10)) {
                return Err(std::io::Error::other(format!("mosquitto did not listen on {p}")));
            }
        }
        Ok(m)
    }

    /// Sets `user`'s password in the password file and has the running broker reload it
    /// (SIGHUP): new connections must use it.
    pub fn set_password(&self, user: &str, password: &str) -> std::io::Result<()> {
        self.write_password(user, password)?;
        if let Some(c) = &self.child {
            Command::new("kill").arg("-HUP").arg(c.id().to_string()).status()?;
        }
        Ok(())
    }

    fn write_password(&self, user: &str, password: &str) -> std::io::Result<()> {
        let file = self.passwords.as_ref().ok_or_else(|| std::io::Error::other("no password file: start_with_passwords"))?;
        let ok = Command::new("mosquitto_passwd").arg("-b").arg(file).arg(user).arg(password).stdout(Stdio::null()).stderr(Stdio::null()).status()?.success();
        if ok {
            Ok(())
        } else {
            Err(std::io::Error::other("mosquitto_passwd failed"))
        }
    }

    /// Starts the process again (after `stop`) on the same ports.
    pub fn restart(&mut self) -> std::io::Result<()> {
        let bin = binary().ok_or_else(|| std::io::Error::other("mosquitto is not installed (apt-get install mosquitto)"))?;
        let child = Command::new(bin).arg("-c").arg(&self.conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        self.child = Some(child);
        for p in std::iter::once(self.port).chain(self.tls_port) {
            if !crate::wait_for_port(p, Duration::from_secs(10)) {
                return Err(std::io::Error::other(format!("mosquitto did not listen on {p}")));
            }
        }
        Ok(())
    }

    /// Kills the process (an outage; clients see their connections drop).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process with SIGTERM, so it saves its sessions (a planned broker restart).
    pub fn stop_gracefully(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}
