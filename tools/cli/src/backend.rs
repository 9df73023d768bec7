//! The backend flags: where the MQTT broker and the Pub/Sub topic are, for every command that
//! talks to both.

/// `--mqtt-url`, `--pubsub-endpoint`, `--pubsub-project` and `--pubsub-topic`, flattened
/// (`#[command(flatten)]`) into the options of every command that takes them. The help and the
/// value names here are the demo's; a command whose flags mean something more (`dualpub verify`
/// reads live with them) states it with `#[command(mut_arg(…))]` on its own options.
#[derive(clap::Args, Debug, Clone)]
pub struct BackendArgs {
    /// Use this MQTT broker instead of the embedded one.
    #[arg(long)]
    pub mqtt_url: Option<String>,
    /// Use this Pub/Sub endpoint instead of the embedded emulator (the topic must exist).
    #[arg(long)]
    pub pubsub_endpoint: Option<String>,
    /// Pub/Sub project.
    #[arg(long, default_value = "dualpub-demo")]
    pub pubsub_project: String,
    /// Pub/Sub topic.
    #[arg(long, default_value = "location-updates")]
    pub pubsub_topic: String,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Demo {
        #[command(flatten)]
        args: crate::demo::DemoArgs,
    }

    #[derive(Parser)]
    struct Verify {
        #[command(flatten)]
        args: crate::verify::VerifyArgs,
    }

    fn help(command: &clap::Command, id: &str) -> String {
        command.get_arguments().find(|a| a.get_id() == id).and_then(|a| a.get_help()).map(|h| h.to_string()).unwrap_or_default()
    }

    #[test]
    fn the_demo_takes_the_shared_flags_as_they_are() {
        let demo = Demo::command();
        assert_eq!(help(&demo, "mqtt_url"), "Use this MQTT broker instead of the embedded one");
        assert_eq!(help(&demo, "pubsub_topic"), "Pub/Sub topic");
        let a = Demo::parse_from(["demo", "--mqtt-url", "mqtt://h:1", "--pubsub-topic", "t"]).args;
        assert_eq!(a.backend.mqtt_url.as_deref(), Some("mqtt://h:1"));
        assert_eq!((a.backend.pubsub_project.as_str(), a.backend.pubsub_topic.as_str()), ("dualpub-demo", "t"));
    }

    #[test]
    fn verify_keeps_its_own_help_and_rules_for_the_shared_flags() {
        let verify = Verify::command();
        assert!(help(&verify, "mqtt_url").starts_with("Instead of a capture: read the pipelines live"));
        assert_eq!(help(&verify, "pubsub_project"), "The Pub/Sub project (live)");
        assert_eq!(help(&verify, "pubsub_topic"), "The locations topic (live)");
        // Live reading needs both backends, and not a capture.
        assert!(Verify::try_parse_from(["verify", "--mqtt-url", "mqtt://h:1"]).is_err());
        assert!(Verify::try_parse_from(["verify", "--mqtt-url", "mqtt://h:1", "--pubsub-endpoint", "http://e", "--capture", "c"]).is_err());
        let a = Verify::try_parse_from(["verify", "--mqtt-url", "mqtt://h:1", "--pubsub-endpoint", "http://e"]).unwrap().args;
        assert_eq!(a.backend.pubsub_endpoint.as_deref(), Some("http://e"));
        assert_eq!(a.backend.pubsub_project, "dualpub-demo");
    }
}
