//! The defaults the documentation states are the ones the code applies: a doc that says what
//! a listener (or weir.toml) gets when it leaves a setting out cannot drift from what it gets.
//!
//! The defaults are read where a user reads them: the listener settings table of `README.md`,
//! and in `docs/desired-state.md` the comments of the `listeners:` reference block
//! ("Resources") and the `Default:` of each bullet under "Limits". Each is checked against
//! what a worker runs with ([`ListenerInfo::new`] with weir.toml's defaults): a listener
//! given the documented value runs exactly as one that leaves the setting out, and one
//! documented as `unlimited` or `none` has no value at all. Likewise every line of the README's
//! weir.toml reference that is not an example value (a path, an address) is the default.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use weir_engine::channel::WorkerConfig;
use weir_engine::main_process::config::Config;
use weir_engine::worker::front::ListenerInfo;
use weir_schema::desired;

/// Every listener limit, each of which every place below must give a default for.
const LIMITS: [&str; 8] = [
    "max_connections_per_ip",
    "max_requests_per_connection",
    "request_body_timeout",
    "send_timeout",
    "max_request_body",
    "request_timeout",
    "front_timeout",
    "tunnel_timeout",
];

/// The four the "Limits" bullets of docs/desired-state.md describe.
const LIMIT_BULLETS: [&str; 4] = [
    "max_connections_per_ip",
    "max_requests_per_connection",
    "request_body_timeout",
    "send_timeout",
];

fn read(path: &str) -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// What a worker runs with for a listener with `setting` (name, YAML value), or none.
fn listener_info(setting: Option<(&str, &str)>) -> Result<String, String> {
    let mut yaml = "listeners:\n  - address: 127.0.0.1:8080\n    protocol: http\n".to_owned();
    if let Some((name, value)) = setting {
        yaml.push_str(&format!("    {name}: {value}\n"));
    }
    let loaded = desired::load_text(Path::new("/nonexistent/defaults.yaml"), &yaml, 0)
        .map_err(|e| format!("{e:?}"))?;
    let listener = loaded.state.listeners.values().next().unwrap();
    let info = ListenerInfo::new(listener, &Config::default().worker_config(0));
    Ok(format!("{info:?}"))
}

/// Whether `value` is what a listener leaving `name` out gets; `Err` says why not.
fn check(name: &str, value: &str) -> Result<(), String> {
    if matches!(value, "unlimited" | "none") {
        let absent = listener_info(None)?;
        return if absent.contains(&format!(" {name}: None,")) {
            Ok(())
        } else {
            Err(format!(
                "documented as {value}, but a listener without it runs with {absent}"
            ))
        };
    }
    let given = listener_info(Some((name, value)))
        .map_err(|e| format!("the documented default {value:?} does not load: {e}"))?;
    let absent = listener_info(None)?;
    if given == absent {
        Ok(())
    } else {
        Err(format!(
            "documented as {value}, but a listener without it runs with\n  {absent}\nand one with \
             {name}: {value} with\n  {given}"
        ))
    }
}

/// `(setting, default)` from the rows of the README's listener settings table.
fn readme_table(text: &str) -> Vec<(String, String)> {
    let start = text
        .find("| listener setting | default |")
        .expect("README.md has the listener settings table");
    text[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].to_owned())
        })
        .collect()
}

/// The value after `marker` in `text`, up to a `;`, `,`, `.` at a word's end, ` (` or the end.
fn value_after(text: &str, marker: &str) -> Option<String> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let end = [
        rest.find(';'),
        rest.find(','),
        rest.find(". "),
        rest.find(" ("),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(rest.len());
    Some(rest[..end].trim().trim_end_matches('.').to_owned())
}

/// `(setting, default)` from the comments of the `listeners:` block under "## Resources".
fn resources_block(text: &str) -> Vec<(String, String)> {
    let start = text.find("## Resources").expect("a Resources section");
    text[start..]
        .lines()
        .skip_while(|l| *l != "listeners:")
        .skip(1)
        .take_while(|l| *l != "clusters:")
        .filter_map(|line| {
            let (field, comment) = line.split_once('#')?;
            let name = field.trim().trim_start_matches("- ").split(':').next()?;
            Some((name.to_owned(), value_after(comment, "default ")?))
        })
        .collect()
}

/// `(setting, default)` from the bullets under "## Limits".
fn limit_bullets(text: &str) -> Vec<(String, String)> {
    let start = text.find("\n## Limits").expect("a Limits section");
    let section = &text[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
    let mut found = Vec::new();
    for bullet in section[..end].split("\n- `").skip(1) {
        let bullet = bullet.split("\n\n").next().unwrap_or_default();
        let joined = bullet.split_whitespace().collect::<Vec<_>>().join(" ");
        let Some((name, body)) = joined.split_once("`:") else {
            continue;
        };
        if let Some(value) = value_after(body, "Default: ") {
            found.push((name.to_owned(), value));
        }
    }
    found
}

/// Checks every `(setting, default)` of one place, and that it covers `expected`.
fn check_place(place: &str, found: &[(String, String)], expected: &[&str]) -> Vec<String> {
    let mut failures = Vec::new();
    for name in expected {
        if !found.iter().any(|(n, _)| n == name) {
            failures.push(format!("{place}: no default given for {name}"));
        }
    }
    for (name, value) in found {
        if LIMITS.contains(&name.as_str()) {
            if let Err(e) = check(name, value) {
                failures.push(format!("{place}: {name}: {e}"));
            }
        }
    }
    failures
}

#[test]
fn every_documented_listener_default_is_the_codes() {
    let readme = read("README.md");
    let doc = read("docs/desired-state.md");
    let mut failures = check_place(
        "README.md, listener settings",
        &readme_table(&readme),
        &LIMITS,
    );
    failures.extend(check_place(
        "docs/desired-state.md, Resources",
        &resources_block(&doc),
        &LIMITS,
    ));
    failures.extend(check_place(
        "docs/desired-state.md, Limits",
        &limit_bullets(&doc),
        &LIMIT_BULLETS,
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_wrong_default_is_caught() {
    // The check itself: neither "999" nor a limit where the code has none passes.
    assert!(check("max_requests_per_connection", "1000").is_ok());
    assert!(check("max_requests_per_connection", "999").is_err());
    assert!(check("send_timeout", "59s").is_err());
    assert!(check("send_timeout", "none").is_err());
    assert!(check("request_body_timeout", "none").is_ok());
    assert!(check("front_timeout", "61s").is_err());
}

/// The keys of the README's weir.toml block that show an example rather than the default
/// (`section.key`).
const TOML_EXAMPLES: [&str; 9] = [
    "socket",
    "workers",
    "desired",
    "state.path",
    "state.auto_save",
    "metrics.prometheus",
    "metrics.statsd",
    "access_log.target",
    "access_log.format",
];

/// What a weir.toml runs with: its settings, and a worker's. `max_connections` left out is
/// settled at start against the fd limit, so it compares by what a worker gets.
fn settled(config: Config) -> (Config, WorkerConfig) {
    let worker = config.worker_config(0);
    (
        Config {
            max_connections: None,
            ..config
        },
        worker,
    )
}

#[test]
fn every_weir_toml_value_the_readme_shows_is_the_default_but_the_examples() {
    let readme = read("README.md");
    let start = readme
        .find("```toml\nsocket = ")
        .expect("README.md has the weir.toml reference");
    let block = &readme[start + "```toml\n".len()..];
    let block = &block[..block.find("```").unwrap()];
    let default = settled(Config::default());
    let (mut section, mut checked, mut failures) = (String::new(), 0, Vec::new());
    for line in block.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if let Some(name) = line.strip_prefix('[') {
            section = name.trim_end_matches(']').to_owned();
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let path = if section.is_empty() {
            key.to_owned()
        } else {
            format!("{section}.{key}")
        };
        if TOML_EXAMPLES.contains(&path.as_str()) {
            continue;
        }
        let toml = if section.is_empty() {
            format!("{line}\n")
        } else {
            format!("[{section}]\n{line}\n")
        };
        checked += 1;
        match Config::from_toml(&toml) {
            Ok(config) if settled(config.clone()) == default => {}
            Ok(config) => failures.push(format!("{path}: `{line}` is not the default: {config:?}")),
            Err(e) => failures.push(format!("{path}: `{line}` does not parse: {e}")),
        }
    }
    assert!(checked >= 15, "only {checked} settings found in the block");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
