//! Node configuration files: environment overrides shared by the orderer and the peer.
//!
//! An environment variable `ORDO_<SECTION>_<KEY>` (upper case) overrides `<key>` in
//! `[<section>]` of a TOML file, for the sections a node declares. Values are read as TOML
//! scalars (numbers, booleans, arrays) and otherwise as strings. Variables naming another
//! section are ignored (they may belong to another tool, e.g. `ORDO_KAFKA_BROKERS`).

/// Parses a node's TOML configuration with `ORDO_` overrides from `env` for `sections`,
/// then makes the listed relative paths relative to `base` (the file's directory).
pub fn parse_node_config<T: serde::de::DeserializeOwned>(
    text: &str,
    env: &[(String, String)],
    sections: &[&str],
    base: &std::path::Path,
    paths: impl Fn(&mut T) -> Vec<&mut std::path::PathBuf>,
) -> Result<T, String> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    apply_env_overrides(&mut table, env, sections)?;
    let mut cfg: T = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.to_string())?;
    for p in paths(&mut cfg) {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(cfg)
}

/// Applies `ORDO_` overrides from `env` to `table` for the given `sections`.
pub fn apply_env_overrides(
    table: &mut toml::Table,
    env: &[(String, String)],
    sections: &[&str],
) -> Result<(), String> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("ORDO_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        let section = section.to_ascii_lowercase();
        if !sections.contains(&section.as_str()) || key.is_empty() {
            continue;
        }
        let key = key.to_ascii_lowercase();
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(sec) = entry else {
            return Err(format!("{section} is not a table (override {name})"));
        };
        sec.insert(key, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_to_known_sections_only() {
        let mut t: toml::Table = "[node]\nname = \"a\"\n".parse().expect("toml");
        let env = vec![
            ("ORDO_NODE_NAME".to_string(), "b".to_string()),
            ("ORDO_NODE_PORT".to_string(), "7".to_string()),
            ("ORDO_OTHER_X".to_string(), "1".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        apply_env_overrides(&mut t, &env, &["node"]).expect("applies");
        assert_eq!(t["node"]["name"].as_str(), Some("b"));
        assert_eq!(t["node"]["port"].as_integer(), Some(7));
        assert!(!t.contains_key("other"));
    }
}
