//! Configuration: the app's [`SdkConfig`] (fixed at construction: endpoints, credentials,
//! storage; `sdk.rs`) and the remote [`MigrationConfig`] (flags and percentages only,
//! docs/CONTRACT.md#migration-config; `migration.rs`), with the builder, the rollout
//! evaluator, where a config came from and how it is fetched.

pub(crate) mod builder;
mod compression;
pub(crate) mod fetch;
mod migration;
pub mod rollout;
mod sdk;
pub(crate) mod source;

pub use compression::*;
pub use migration::*;
pub use sdk::*;

#[cfg(test)]
mod tests {
    use super::rollout::RolloutAlgorithm;
    use super::*;
    use crate::error::ConfigError;

    #[test]
    fn endpoints_need_tls_unless_insecure_is_allowed() {
        assert!(https_url("f", "https://c.example/x.json", false).is_ok());
        assert!(https_url("f", "http://127.0.0.1:8086/x", true).is_ok());
        for (bad, insecure) in [("http://127.0.0.1/x", false), ("https://", true), ("http://", true), ("ftp://c.example/x", true), ("c.example", true)] {
            let e = https_url("remoteConfigUrl", bad, insecure).expect_err(bad);
            assert!(e.to_string().contains("remoteConfigUrl"), "{e}");
        }
    }

    #[test]
    fn parses_the_contract_example_document() {
        let c = MigrationConfig::from_json(
            r#"{"version": 42, "mqttEnabled": true, "pubsubEnabled": true, "pubsubPercentage": 25.5,
            "fallbackToMqtt": true, "debugMode": false, "emergencyMode": false,
            "rollout": {"salt": "pubsub-migration", "algorithm": "v1"},
            "deviceOverrides":  {"d-1": {"pubsubEnabled": true}},
            "companyOverrides": {"c-9": {"pubsubPercentage": 100}}, "futureField": [1,2]}"#,
        )
        .unwrap();
        assert_eq!(c.version, 42);
        assert_eq!(c.pubsub_percentage, 25.5);
        assert_eq!(c.device_overrides["d-1"].pubsub_enabled, Some(true));
        assert_eq!(c.company_overrides["c-9"].pubsub_percentage, Some(100.0));
    }

    #[test]
    fn a_bad_override_is_skipped_and_forbidden_fields_ignored() {
        let p = MigrationConfig::parse(
            r#"{"version": 3, "pubsubEnabled": true, "brokerUrl": "mqtt://evil", "password": "x",
            "deviceOverrides": {"a/b": {"pubsubEnabled": true}, "ok-1": {"pubsubEnabled": true}, "d": {"pubsubEnabled": 1},
                                "Dev-2": {"mqttEnabled": false}, "dev-2": {"mqttEnabled": true}},
            "companyOverrides": {"c": {"pubsubPercentage": 200}, "c-9": {"pubsubPercentage": 50}}}"#,
        )
        .unwrap();
        assert_eq!(p.config.version, 3);
        assert!(p.config.device_overrides.contains_key("ok-1"));
        assert!(p.config.company_overrides.contains_key("c-9"));
        assert_eq!(p.config.device_overrides.len() + p.config.company_overrides.len(), 3, "{p:?}");
        assert_eq!(p.skipped.len(), 4, "{:?}", p.skipped);
        assert_eq!(p.ignored.len(), 2, "{:?}", p.ignored);
        assert!(matches!(MigrationConfig::parse(&format!(r#"{{"rollout": {{"salt": "{}"}}}}"#, "x".repeat(300_000))), Err(ConfigError::TooLarge(_))));
    }

    #[test]
    fn to_json_round_trips() {
        let c = MigrationConfig::from_json(
            r#"{"version": 4, "pubsubEnabled": true, "pubsubPercentage": 12.5, "debugMode": true,
            "rollout": {"salt": "s", "algorithm": "crc32"}, "deviceOverrides": {"d": {"mqttEnabled": false}}}"#,
        )
        .unwrap();
        assert_eq!(MigrationConfig::from_json(&c.to_json().to_string()).unwrap(), c);
    }

    #[test]
    fn missing_fields_take_the_mqtt_only_defaults() {
        assert_eq!(MigrationConfig::from_json("{}").unwrap(), MigrationConfig::default());
        let c = MigrationConfig::from_json(r#"{"rollout":{"algorithm":"crc32"}}"#).unwrap();
        assert_eq!((c.rollout_algorithm, c.rollout_salt.as_str()), (RolloutAlgorithm::Crc32, DEFAULT_SALT));
    }

    #[test]
    fn invalid_documents_are_rejected_whole() {
        for bad in [
            "",
            "[]",
            "not json",
            r#"{"pubsubPercentage": 101}"#,
            r#"{"pubsubPercentage": -0.5}"#,
            r#"{"pubsubPercentage": "50"}"#,
            r#"{"pubsubPercentage": 1e999}"#,
            r#"{"mqttEnabled": "yes"}"#,
            r#"{"version": -1}"#,
            r#"{"rollout": {"algorithm": "md5"}}"#,
            r#"{"rollout": {"salt": ""}}"#,
            r#"{"version": 1, "version": 2}"#,
            r#"{"deviceOverrides": {"d": {"pubsubEnabled": true, "pubsubEnabled": false}}}"#,
        ] {
            assert!(MigrationConfig::from_json(bad).is_err(), "accepted {bad:?}");
        }
    }
}
