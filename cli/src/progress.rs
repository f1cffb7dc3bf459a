//! The compile progress line: shown on stderr only when a person is watching (stderr is a
//! terminal) and compiling has already taken longer than [`SHOW_AFTER`], so that small modules,
//! cached modules, pipes and log files never see it.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use weft::CompileProgress;

/// How long compiling runs before the line appears.
pub const SHOW_AFTER: Duration = Duration::from_secs(1);

/// The least time between two redraws.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// A progress line for compiling one module, drawn on `W`.
pub struct ProgressLine<W: Write + Send> {
    label: String,
    start: Instant,
    show_after: Duration,
    state: Mutex<LineState<W>>,
}

struct LineState<W> {
    out: W,
    /// When the line was last drawn; `None` while nothing is on screen.
    drawn: Option<Instant>,
}

impl ProgressLine<std::io::Stderr> {
    /// A line on stderr if it is a terminal, else `None`.
    pub fn for_stderr(label: &str) -> Option<Self> {
        std::io::stderr()
            .is_terminal()
            .then(|| ProgressLine::new(label, std::io::stderr(), SHOW_AFTER))
    }
}

impl<W: Write + Send> ProgressLine<W> {
    /// A line about `label` on `out`, drawn once compiling has taken `show_after`.
    pub fn new(label: &str, out: W, show_after: Duration) -> Self {
        ProgressLine {
            label: label.to_string(),
            start: Instant::now(),
            show_after,
            state: Mutex::new(LineState { out, drawn: None }),
        }
    }

    /// Redraws the line with `progress` if it is due. Called from compile threads: a thread
    /// that finds another one drawing skips its update rather than waiting.
    pub fn update(&self, progress: CompileProgress) {
        if self.start.elapsed() < self.show_after {
            return;
        }
        let Ok(mut state) = self.state.try_lock() else {
            return;
        };
        let now = Instant::now();
        let last = progress.functions_done >= progress.functions_total;
        if state
            .drawn
            .is_some_and(|at| now.duration_since(at) < REDRAW_EVERY && !last)
        {
            return;
        }
        let percent = progress
            .functions_done
            .saturating_mul(100)
            .checked_div(progress.functions_total)
            .unwrap_or(100);
        // A terminal that went away is no reason to stop compiling: errors are ignored.
        let _ = write!(
            state.out,
            "\r\x1b[Kcompiling {}: {}/{} functions ({percent}%)",
            self.label, progress.functions_done, progress.functions_total
        );
        let _ = state.out.flush();
        state.drawn = Some(now);
    }

    /// Clears the line if it was drawn, so the program's own output starts on a clean line.
    pub fn finish(&self) {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.drawn.take().is_some() {
            let _ = write!(state.out, "\r\x1b[K");
            let _ = state.out.flush();
        }
    }

    /// The writer, for tests.
    #[cfg(test)]
    fn into_output(self) -> W {
        match self.state.into_inner() {
            Ok(state) => state.out,
            Err(poisoned) => poisoned.into_inner().out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(done: usize, total: usize) -> CompileProgress {
        CompileProgress {
            functions_done: done,
            functions_total: total,
        }
    }

    #[test]
    fn nothing_is_drawn_before_the_delay() {
        let line = ProgressLine::new("app.wasm", Vec::new(), Duration::from_secs(3600));
        line.update(at(1, 2));
        line.update(at(2, 2));
        line.finish();
        assert!(line.into_output().is_empty());
    }

    #[test]
    fn after_the_delay_the_line_shows_counts_and_is_cleared_at_the_end() {
        let line = ProgressLine::new("app.wasm", Vec::new(), Duration::ZERO);
        line.update(at(1, 4));
        // Within the redraw interval: skipped, except for the last update.
        line.update(at(2, 4));
        line.update(at(4, 4));
        line.finish();
        let text = String::from_utf8(line.into_output()).unwrap();
        assert_eq!(
            text,
            "\r\x1b[Kcompiling app.wasm: 1/4 functions (25%)\
             \r\x1b[Kcompiling app.wasm: 4/4 functions (100%)\
             \r\x1b[K"
        );
    }

    #[test]
    fn a_module_without_functions_reads_as_complete() {
        let line = ProgressLine::new("empty.wasm", Vec::new(), Duration::ZERO);
        line.update(at(0, 0));
        let text = String::from_utf8(line.into_output()).unwrap();
        assert!(text.ends_with("0/0 functions (100%)"), "{text:?}");
    }
}
