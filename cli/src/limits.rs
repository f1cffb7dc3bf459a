//! `-W` options of `weft run`, in wasmtime's spelling: `-W fuel=N` and `-W timeout=DURATION`.

use std::time::Duration;

use weft::{Config, Engine, Error, Store, Trap};

/// The limits a run was given.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    /// `-W fuel=N`: the Wasm operators the program may execute.
    pub fuel: Option<u64>,
    /// `-W timeout=DURATION`: how long the program may run.
    pub timeout: Option<Duration>,
}

impl Limits {
    /// Parses the `-W` options (each `KEY=VALUE`, or several separated by commas).
    pub fn parse(options: &[String]) -> Result<Limits, String> {
        let mut limits = Limits::default();
        for option in options.iter().flat_map(|o| o.split(',')) {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| format!("-W {option}: expected KEY=VALUE (fuel=N, timeout=1s)"))?;
            match key {
                "fuel" => {
                    let fuel = value
                        .parse::<u64>()
                        .map_err(|_| format!("-W fuel={value}: expected a whole number"))?;
                    limits.fuel = Some(fuel);
                }
                "timeout" => limits.timeout = Some(parse_duration(value)?),
                _ => {
                    return Err(format!(
                        "-W {key}: unknown option (weft run knows fuel=N and timeout=DURATION)"
                    ));
                }
            }
        }
        Ok(limits)
    }

    /// Turns on what the limits need in `config`.
    pub fn configure(&self, config: &mut Config) {
        config
            .consume_fuel(self.fuel.is_some())
            .epoch_interruption(self.timeout.is_some());
    }

    /// Gives `store` its fuel and its deadline, and starts the clock: after the timeout, the
    /// engine's epoch moves past the deadline, from a thread of its own.
    pub fn start<T>(&self, engine: &Engine, store: &mut Store<T>) -> Result<(), String> {
        if let Some(fuel) = self.fuel {
            store.set_fuel(fuel).map_err(|e| e.to_string())?;
        }
        if let Some(timeout) = self.timeout {
            store.set_epoch_deadline(1);
            let engine = engine.clone();
            std::thread::Builder::new()
                .name("weft-timeout".into())
                .spawn(move || {
                    std::thread::sleep(timeout);
                    engine.increment_epoch();
                })
                .map_err(|e| format!("cannot start the timeout's thread: {e}"))?;
        }
        Ok(())
    }

    /// What to tell the user when `error` is one of these limits being reached.
    pub fn explain(&self, error: &Error) -> Option<String> {
        match error.trap()? {
            Trap::Interrupt => self.timeout.map(|_| self.timed_out()),
            Trap::OutOfFuel => self.fuel.map(|fuel| {
                format!("the program used all its fuel (-W fuel={fuel}) and was stopped")
            }),
            _ => None,
        }
    }

    /// The message for a run that outlived its timeout while waiting (in I/O or a sleep, where
    /// no epoch check runs).
    pub fn timed_out(&self) -> String {
        format!(
            "the program ran longer than its time limit (-W timeout={}) and was stopped",
            self.timeout.map(show_duration).unwrap_or_default()
        )
    }
}

/// `1s`, `500ms`, `1.5m`, `2h`, `100us`, `10ns`; a bare number is seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("-W timeout={text}: expected a duration such as 1s, 500ms or 2m");
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds_per_unit = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "ns" => 1e-9,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(number * seconds_per_unit).map_err(|_| bad())
}

fn show_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_secs_f64() * 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fuel_and_timeouts_in_wasmtimes_spelling() {
        let limits = Limits::parse(&["fuel=1000".into(), "timeout=1.5s".into()]).unwrap();
        assert_eq!(limits.fuel, Some(1000));
        assert_eq!(limits.timeout, Some(Duration::from_millis(1500)));
        let limits = Limits::parse(&["timeout=250ms,fuel=7".into()]).unwrap();
        assert_eq!(limits.timeout, Some(Duration::from_millis(250)));
        assert_eq!(limits.fuel, Some(7));
        assert_eq!(
            Limits::parse(&["timeout=2m".into()]).unwrap().timeout,
            Some(Duration::from_secs(120))
        );
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
        ] {
            assert!(Limits::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
