//! Node configuration files: environment overrides shared by the orderer and the peer.
//!
//! An environment variable `ORDO_<SECTION>_<KEY>` (upper case) overrides `<key>` in
//! `[<section>]` of a TOML file, for the sections a node declares. Values are read as TOML
//! scalars (numbers, booleans, arrays) and otherwise as strings. Variables naming another
//! section are ignored (they may belong to another tool, e.g. `ORDO_NETWORK`), unless the
//! name is one typo away from a section the node has (`ORDO_NDOE_LISTEN_ADDR`): that is an
//! error naming the section meant, since a silently ignored override is a node running
//! with a setting its operator believes changed.

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
        if !sections.contains(&section.as_str()) {
            if let Some(meant) = sections.iter().find(|s| is_typo_of(&section, s)) {
                return Err(format!(
                    "{name} names no config section; did you mean ORDO_{}_{key}?",
                    meant.to_ascii_uppercase()
                ));
            }
            continue;
        }
        if key.is_empty() {
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

/// Whether `word` is one edit (an insertion, deletion, substitution or swap of two
/// neighbours) away from `section`, or two for sections of six letters or more.
fn is_typo_of(word: &str, section: &str) -> bool {
    let limit = if section.len() >= 6 { 2 } else { 1 };
    word != section && edit_distance(word.as_bytes(), section.as_bytes()) <= limit
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = best;
        }
    }
    d[a.len() * w + b.len()]
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

    #[test]
    fn a_mistyped_section_is_an_error_naming_the_one_meant() {
        let mut t = toml::Table::new();
        let sections = ["node", "identity", "deliver", "tls", "connections"];
        for (name, meant) in [
            ("ORDO_NDOE_LISTEN_ADDR", "ORDO_NODE_LISTEN_ADDR"),
            ("ORDO_NOD_NAME", "ORDO_NODE_NAME"),
            ("ORDO_IDENTIY_KEY_FILE", "ORDO_IDENTITY_KEY_FILE"),
            ("ORDO_TSL_ENABLED", "ORDO_TLS_ENABLED"),
        ] {
            let env = vec![(name.to_string(), "x".to_string())];
            let err = apply_env_overrides(&mut t, &env, &sections).expect_err(name);
            assert!(err.contains(meant), "{err}");
        }
        // Other tools' variables are far from every section and stay ignored.
        let env: Vec<(String, String)> = [
            "ORDO_NETWORK",
            "ORDO_KAFKA_BROKERS",
            "ORDO_TEST_FAULT",
            "ORDO_CHAOS_SEED_OFFSET",
            "ORDO_BIN",
        ]
        .iter()
        .map(|n| (n.to_string(), "1".to_string()))
        .collect();
        apply_env_overrides(&mut t, &env, &sections).expect("ignored");
        assert!(t.is_empty());
    }
}
