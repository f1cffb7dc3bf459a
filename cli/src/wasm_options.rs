//! `-W` options, in wasmtime's spelling: `KEY=VALUE`, repeatable or comma-separated.
//!
//! - Limits (`weft run`): `fuel=N`, `timeout=DURATION` (see `limits.rs`).
//! - WebAssembly feature switches (`weft run`, `weft compile`, `weft wast`), all on by
//!   default: `simd`, `relaxed-simd`, `reference-types`, `function-references`, `tail-call`,
//!   `extended-const`, `multi-memory`, `bulk-memory`, `multi-value`, `exceptions`,
//!   `memory64`, each `=y` or `=n` (also `yes`/`no`, `true`/`false`, `1`/`0`; a bare key
//!   means `y`; `simd=n` also turns `relaxed-simd` off, and `reference-types=n`
//!   `function-references`, unless those are given too). Proposals weft does not implement
//!   (`gc`, `threads`, `stack-switching`) accept `=n` and refuse `=y` with a message saying
//!   so.
//! - `max-wasm-stack=BYTES`: the Wasm stack a call may use (`Config::max_wasm_stack`).

use weft::Config;

use crate::limits::Limits;

/// A `Config` setter of one feature switch.
type Switch = fn(&mut Config, bool) -> &mut Config;

/// The feature switches: `-W` name and `Config` setter.
const SWITCHES: &[(&str, Switch)] = &[
    ("simd", Config::wasm_simd),
    ("relaxed-simd", Config::wasm_relaxed_simd),
    ("reference-types", Config::wasm_reference_types),
    ("function-references", Config::wasm_function_references),
    ("tail-call", Config::wasm_tail_call),
    ("extended-const", Config::wasm_extended_const),
    ("multi-memory", Config::wasm_multi_memory),
    ("bulk-memory", Config::wasm_bulk_memory),
    ("multi-value", Config::wasm_multi_value),
    ("exceptions", Config::wasm_exceptions),
    ("memory64", Config::wasm_memory64),
];

/// Switches that need another: turning the base off turns these off too, unless they were
/// given themselves (`-W simd=n` alone means no relaxed SIMD either).
const DEPENDENTS: &[(&str, &str, Switch)] = &[
    ("simd", "relaxed-simd", Config::wasm_relaxed_simd),
    (
        "reference-types",
        "function-references",
        Config::wasm_function_references,
    ),
];

/// Proposals weft does not implement yet: `-W NAME=n` is accepted (it is already off).
const NOT_IMPLEMENTED: &[&str] = &["gc", "threads", "stack-switching"];

/// What the `-W` options asked for.
#[derive(Clone, Debug, Default)]
pub struct WasmOptions {
    /// `fuel` and `timeout`.
    pub limits: Limits,
    /// Feature switches given, in order (a later one wins): name, setter and value.
    switches: Vec<(&'static str, Switch, bool)>,
    /// `max-wasm-stack`.
    max_wasm_stack: Option<usize>,
}

impl WasmOptions {
    /// Parses the `-W` options.
    pub fn parse(options: &[String]) -> Result<WasmOptions, String> {
        let mut parsed = WasmOptions::default();
        for option in options.iter().flat_map(|o| o.split(',')) {
            let (key, value) = match option.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (option, None),
            };
            if parsed.limits.take(key, value)? {
                continue;
            }
            if let Some((name, set)) = SWITCHES.iter().find(|(name, _)| *name == key) {
                parsed
                    .switches
                    .push((name, *set, parse_switch(key, value)?));
            } else if NOT_IMPLEMENTED.contains(&key) {
                if parse_switch(key, value)? {
                    return Err(format!(
                        "-W {key}: weft does not implement the {key} proposal yet"
                    ));
                }
            } else if key == "max-wasm-stack" {
                let value = value.unwrap_or_default();
                let bytes = value.parse::<usize>().map_err(|_| {
                    format!("-W max-wasm-stack={value}: expected a number of bytes")
                })?;
                parsed.max_wasm_stack = Some(bytes);
            } else {
                return Err(format!(
                    "-W {key}: unknown option (weft knows fuel=N, timeout=DURATION, \
                     max-wasm-stack=BYTES, and the feature switches {}=y|n)",
                    SWITCHES
                        .iter()
                        .map(|(name, _)| *name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(parsed)
    }

    /// Whether a limit (fuel, timeout) was given.
    pub fn has_limits(&self) -> bool {
        self.limits != Limits::default()
    }

    /// Applies the options to `config`.
    pub fn configure(&self, config: &mut Config) {
        self.limits.configure(config);
        let given = |name: &str| self.switches.iter().any(|(n, _, _)| *n == name);
        for &(name, set, on) in &self.switches {
            set(config, on);
            for &(base, dependent, set_dependent) in DEPENDENTS {
                if name == base && !on && !given(dependent) {
                    set_dependent(config, false);
                }
            }
        }
        if let Some(bytes) = self.max_wasm_stack {
            // A promising call's stack must hold the Wasm stack: grow it with the limit.
            let async_stack = config.get_async_stack_size().max(bytes.saturating_mul(2));
            config.max_wasm_stack(bytes).async_stack_size(async_stack);
        }
    }
}

/// `y`, `n` and their spellings; a bare key is `y`.
fn parse_switch(key: &str, value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("y" | "yes" | "true" | "1") => Ok(true),
        Some("n" | "no" | "false" | "0") => Ok(false),
        Some(other) => Err(format!("-W {key}={other}: expected y or n")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn parses_fuel_and_timeouts_in_wasmtimes_spelling() {
        let options = WasmOptions::parse(&["fuel=1000".into(), "timeout=1.5s".into()]).unwrap();
        assert_eq!(options.limits.fuel, Some(1000));
        assert_eq!(options.limits.timeout, Some(Duration::from_millis(1500)));
        let options = WasmOptions::parse(&["timeout=250ms,fuel=7".into()]).unwrap();
        assert_eq!(options.limits.timeout, Some(Duration::from_millis(250)));
        assert_eq!(options.limits.fuel, Some(7));
        assert_eq!(
            WasmOptions::parse(&["timeout=2m".into()])
                .unwrap()
                .limits
                .timeout,
            Some(Duration::from_secs(120))
        );
    }

    #[test]
    fn feature_switches_reach_the_config() {
        let options =
            WasmOptions::parse(&["tail-call=n,simd=no".into(), "multi-memory".into()]).unwrap();
        let mut config = Config::new();
        config.wasm_multi_memory(false);
        options.configure(&mut config);
        assert!(!config.get_wasm_tail_call());
        assert!(!config.get_wasm_simd());
        assert!(config.get_wasm_multi_memory());
        // Relaxed SIMD follows SIMD off unless it is given itself.
        assert!(!config.get_wasm_relaxed_simd());
        assert!(config.get_wasm_function_references());
        assert!(weft::Engine::new(&config).is_ok());
        let mut config = Config::new();
        WasmOptions::parse(&["reference-types=n".into()])
            .unwrap()
            .configure(&mut config);
        assert!(!config.get_wasm_function_references());
        let mut config = Config::new();
        WasmOptions::parse(&["simd=n,relaxed-simd=y".into()])
            .unwrap()
            .configure(&mut config);
        assert!(weft::Engine::new(&config).is_err());
        assert!(!options.has_limits());
        // Proposals weft lacks may be turned off, not on.
        assert!(WasmOptions::parse(&["threads=n,gc=0".into()]).is_ok());
        let error = WasmOptions::parse(&["gc=y".into()]).unwrap_err();
        assert!(
            error.contains("does not implement the gc proposal"),
            "{error}"
        );
        assert!(WasmOptions::parse(&["exceptions=y".into()]).is_ok());
        let mut config = Config::new();
        WasmOptions::parse(&["memory64=n".into()])
            .unwrap()
            .configure(&mut config);
        assert!(!config.get_wasm_memory64());
    }

    #[test]
    fn every_switch_turns_its_feature_off() {
        for (name, _) in SWITCHES {
            let mut config = Config::new();
            WasmOptions::parse(&[format!("{name}=n")])
                .unwrap()
                .configure(&mut config);
            let on = [
                config.get_wasm_simd(),
                config.get_wasm_relaxed_simd(),
                config.get_wasm_reference_types(),
                config.get_wasm_function_references(),
                config.get_wasm_tail_call(),
                config.get_wasm_extended_const(),
                config.get_wasm_multi_memory(),
                config.get_wasm_bulk_memory(),
                config.get_wasm_multi_value(),
                config.get_wasm_exceptions(),
                config.get_wasm_memory64(),
            ];
            let dependents = DEPENDENTS.iter().filter(|(base, ..)| base == name).count();
            assert_eq!(
                on.iter().filter(|on| !**on).count(),
                1 + dependents,
                "{name}"
            );
            assert!(weft::Engine::new(&config).is_ok(), "{name}=n alone");
        }
    }

    #[test]
    fn max_wasm_stack_keeps_the_async_stack_large_enough() {
        let options = WasmOptions::parse(&["max-wasm-stack=8388608".into()]).unwrap();
        let mut config = Config::new();
        options.configure(&mut config);
        assert_eq!(config.get_max_wasm_stack(), 8 << 20);
        assert!(config.get_async_stack_size() >= 16 << 20);
        assert!(weft::Engine::new(&config).is_ok());
    }

    #[test]
    fn refuses_unknown_keys_and_malformed_values() {
        for bad in [
            "fuel",
            "fuel=-1",
            "fuel=x",
            "timeout=1 s",
            "timeout=1d",
            "speed=9",
            "timeout=-1s",
            "simd=maybe",
            "max-wasm-stack=big",
        ] {
            assert!(WasmOptions::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
