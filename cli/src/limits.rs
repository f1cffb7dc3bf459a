//! The limits among `weft run`'s `-W` options, in wasmtime's spelling: `-W fuel=N` and
//! `-W timeout=DURATION` (parsed with the rest in `wasm_options.rs`).

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
    /// Takes `key=value` if it is a limit: `Ok(true)` if it was, `Ok(false)` if the key is
    /// not one of these, an error for a limit with a bad value.
    pub fn take(&mut self, key: &str, value: Option<&str>) -> Result<bool, String> {
        match key {
            "fuel" => {
                let value = value.unwrap_or_default();
                let fuel = value
                    .parse::<u64>()
                    .map_err(|_| format!("-W fuel={value}: expected a whole number"))?;
                self.fuel = Some(fuel);
            }
            "timeout" => self.timeout = Some(parse_duration(value.unwrap_or_default())?),
            _ => return Ok(false),
        }
        Ok(true)
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
