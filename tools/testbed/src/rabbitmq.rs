//! Runs Debian's RabbitMQ (an Erlang broker, like EMQX) with its MQTT plugin as a private node:
//! its own ports, node name, data and log directories under `dir`, so it neither needs nor
//! touches a system service. It takes 10–20 s to start. Stopped and started again on the same
//! directory it keeps durable state: the queues of persistent MQTT sessions and the QoS 1
//! messages in them.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where the server script is on Debian.
const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// Whether RabbitMQ is installed (`apt-get install rabbitmq-server`).
pub fn installed() -> bool {
    Path::new(SERVER).exists()
}

/// A private RabbitMQ node with the MQTT plugin.
pub struct RabbitMq {
    /// The MQTT listener port.
    pub port: u16,
    dir: PathBuf,
    amqp_port: u16,
    dist_port: u16,
    child: Option<Child>,
}

impl RabbitMq {
    /// Starts a node whose state lives in `dir`; returns once MQTT listens.
    pub fn start(dir: &Path) -> std::io::Result<RabbitMq> {
        let (port, amqp_port, dist_port) = (crate::free_port()?, crate::free_port()?, crate::free_port()?);
        let mut conf = std::fs::File::create(dir.join("rabbitmq.conf"))?;
        // Listening on loopback only; anonymous MQTT (as guest), as a test broker.
        writeln!(conf, "listeners.tcp.default = 127.0.0.1:{amqp_port}\nmqtt.listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none")?;
        std::fs::write(dir.join("enabled_plugins"), "[rabbitmq_mqtt].\n")?;
        let mut r = RabbitMq { port, dir: dir.to_path_buf(), amqp_port, dist_port, child: None };
        r.restart()?;
        Ok(r)
    }

    /// Starts the node again (after [`RabbitMq::stop`]) on the same ports and directory.
    pub fn restart(&mut self) -> std::io::Result<()> {
        if !installed() {
            return Err(std::io::Error::other("rabbitmq-server is not installed (apt-get install rabbitmq-server)"));
        }
        let d = self.dir.clone();
        let log = std::fs::File::create(d.join("server.log"))?;
        let child = Command::new(SERVER)
            .env("HOME", &d) // the Erlang cookie
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_NODENAME", format!("dualpub-{}@localhost", self.amqp_port))
            .env("RABBITMQ_NODE_PORT", self.amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()?;
        self.child = Some(child);
        if !crate::wait_for_port(self.port, Duration::from_secs(90)) {
            self.stop();
            let tail = std::fs::read_to_string(d.join("server.log")).unwrap_or_default();
            let tail: String = tail.lines().rev().take(10).collect::<Vec<_>>().join("\n");
            return Err(std::io::Error::other(format!("RabbitMQ did not listen on {} within 90 s:\n{tail}", self.port)));
        }
        Ok(())
    }

    /// Stops the node with SIGTERM (a planned restart: it shuts down cleanly, keeping durable
    /// queues and persistent messages) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The script runs the Erlang VM as a child: signal the whole process group.
            let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", c.id())]).status();
            let _ = c.wait();
            // The VM may outlive the script by a moment; wait until the port is free.
            for _ in 0..100 {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        self.stop();
    }
}
