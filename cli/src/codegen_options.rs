//! `-C` options, in wasmtime's spelling of its compilation options: `KEY=VALUE`, repeatable
//! or comma-separated, for `weft run`.
//!
//! - `lazy=y|n` (default `n`): compile each function on its first call instead of all before
//!   the program starts (`Config::lazy_compilation`); the rest is compiled in the background.
//! - `lazy-background=y|n` (default `y`): with `lazy`, whether functions not called yet are
//!   compiled in the background (`Config::lazy_background_compilation`).
//!
//! Switch values are spelled as for `-W` (`y`/`n`, `yes`/`no`, `true`/`false`, `1`/`0`; a bare
//! key is `y`).

use weft::Config;

/// What the `-C` options asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodegenOptions {
    pub lazy: Option<bool>,
    pub lazy_background: Option<bool>,
}

impl CodegenOptions {
    /// Parses the `-C` options.
    pub fn parse(options: &[String]) -> Result<CodegenOptions, String> {
        let mut parsed = CodegenOptions::default();
        for option in options.iter().flat_map(|o| o.split(',')) {
            let (key, value) = match option.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (option, None),
            };
            let field = match key {
                "lazy" => &mut parsed.lazy,
                "lazy-background" => &mut parsed.lazy_background,
                _ => {
                    return Err(format!(
                        "-C {key}: unknown option (weft knows lazy=y|n, lazy-background=y|n)"
                    ));
                }
            };
            *field = Some(match value {
                None | Some("y" | "yes" | "true" | "1") => true,
                Some("n" | "no" | "false" | "0") => false,
                Some(other) => return Err(format!("-C {key}={other}: expected y or n")),
            });
        }
        Ok(parsed)
    }

    /// Applies the options to `config`.
    pub fn configure(&self, config: &mut Config) {
        if let Some(on) = self.lazy {
            config.lazy_compilation(on);
        }
        if let Some(on) = self.lazy_background {
            config.lazy_background_compilation(on);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_switches_reach_the_config() {
        let mut config = Config::new();
        CodegenOptions::parse(&["lazy".into(), "lazy-background=n".into()])
            .unwrap()
            .configure(&mut config);
        assert!(config.get_lazy_compilation());
        assert!(!config.get_lazy_background_compilation());
        let mut config = Config::new();
        CodegenOptions::parse(&["lazy=no".into()])
            .unwrap()
            .configure(&mut config);
        assert!(!config.get_lazy_compilation());
        assert!(config.get_lazy_background_compilation());
    }

    #[test]
    fn unknown_keys_and_values_are_refused_with_what_is_known() {
        let error = CodegenOptions::parse(&["lazy=maybe".into()]).unwrap_err();
        assert_eq!(error, "-C lazy=maybe: expected y or n");
        let error = CodegenOptions::parse(&["opt-level=2".into()]).unwrap_err();
        assert!(error.contains("weft knows lazy=y|n"), "{error}");
    }
}
