//! The supervisor, the worker and the reproducer runner (see the crate docs for the protocol).

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::rng::Rng;
use crate::targets::Target;

/// Corpus entries kept per target; beyond it only the replay set is used.
const CORPUS_CAP: usize = 400;
/// Reproducer files written per run (the same bug tends to be found many times).
const ARTIFACT_CAP: usize = 25;

const TAG_START: u8 = b'S';
const TAG_END: u8 = b'E';
const TAG_FAIL: u8 = b'F';

/// A frame from the worker.
enum Frame {
    Start(Vec<u8>),
    End,
    Fail(String),
}

fn write_frame(out: &mut impl Write, tag: u8, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    // A broken pipe means the supervisor is gone: nothing is left to report to.
    let ok = out
        .write_all(&[tag])
        .and_then(|()| out.write_all(&len.to_le_bytes()))
        .and_then(|()| out.write_all(&payload[..len as usize]))
        .and_then(|()| out.flush());
    if ok.is_err() {
        std::process::exit(3);
    }
}

fn read_frame(input: &mut impl Read) -> Option<Frame> {
    let mut head = [0u8; 5];
    input.read_exact(&mut head).ok()?;
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut payload = vec![0u8; len];
    input.read_exact(&mut payload).ok()?;
    match head[0] {
        TAG_START => Some(Frame::Start(payload)),
        TAG_END => Some(Frame::End),
        TAG_FAIL => Some(Frame::Fail(String::from_utf8_lossy(&payload).into_owned())),
        _ => None,
    }
}

/// FNV-1a, to name files after their contents.
pub fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn corpus_dir(dir: &Path, target: Target) -> PathBuf {
    dir.join("corpus").join(target.name())
}

fn artifact_dir(dir: &Path, target: Target) -> PathBuf {
    dir.join("artifacts").join(target.name())
}

fn load_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|path| std::fs::read(path).ok())
        .collect()
}

/// The panic message in a caught payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-string panic payload)".to_string()
    }
}

/// Runs one case and says what went wrong, if anything: `Ok(signature)` or `Err(description)`.
fn run_case(target: Target, input: &[u8]) -> Result<String, String> {
    match catch_unwind(AssertUnwindSafe(|| target.run(input))) {
        Ok(Ok(signature)) => Ok(signature),
        Ok(Err(violation)) => Err(violation),
        Err(payload) => Err(format!("panic: {}", panic_message(&*payload))),
    }
}

/// The child process: runs cases until the time is up and streams frames to stdout.
pub fn worker(target: Target, seed: u64, seconds: u64, _replay: bool, dir: &Path) -> ExitCode {
    // Caught panics are reported as frames; the default hook still prints each one to the
    // (captured) stderr, which is what explains a panic that could not unwind.
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let corpus_path = corpus_dir(dir, target);
    let _ = std::fs::create_dir_all(&corpus_path);
    let mut corpus = load_corpus(&corpus_path);
    let mut seen = HashSet::new();
    let mut out = std::io::stdout().lock();
    let mut case = |input: Vec<u8>, corpus: &mut Vec<Vec<u8>>, replay: bool| {
        write_frame(&mut out, TAG_START, &input);
        match run_case(target, &input) {
            Ok(signature) => {
                write_frame(&mut out, TAG_END, &[]);
                if seen.insert(signature) && !replay && corpus.len() < CORPUS_CAP {
                    let path = corpus_path.join(format!("{:016x}", hash(&input)));
                    let _ = std::fs::write(path, &input);
                    corpus.push(input);
                }
            }
            Err(description) => write_frame(&mut out, TAG_FAIL, description.as_bytes()),
        }
    };
    // Replay first: old inputs are regression tests, and they seed the signature set.
    for input in corpus.clone() {
        if Instant::now() >= deadline {
            return ExitCode::SUCCESS;
        }
        case(input, &mut corpus, true);
    }
    let mut rng = Rng::new(seed);
    while Instant::now() < deadline {
        let input = if !corpus.is_empty() && rng.below(3) != 0 {
            let base = &corpus[rng.below(corpus.len() as u64) as usize];
            let other = &corpus[rng.below(corpus.len() as u64) as usize];
            rng.mutate(base, other)
        } else {
            rng.fresh_input()
        };
        case(input, &mut corpus, false);
    }
    ExitCode::SUCCESS
}

/// Counts, for the summary.
#[derive(Default)]
struct Tally {
    executions: u64,
    failures: u64,
    artifacts: usize,
    /// Distinct descriptions, with how often each was seen.
    distinct: HashMap<String, u64>,
}

impl Tally {
    fn failure(&mut self, dir: &Path, target: Target, kind: &str, input: &[u8], what: &str) {
        self.failures += 1;
        let line = what.lines().next().unwrap_or("").to_string();
        let first = !self.distinct.contains_key(&line);
        *self.distinct.entry(line.clone()).or_default() += 1;
        if !first || self.artifacts >= ARTIFACT_CAP {
            return;
        }
        self.artifacts += 1;
        let artifacts = artifact_dir(dir, target);
        let _ = std::fs::create_dir_all(&artifacts);
        let stem = artifacts.join(format!("{kind}-{:016x}", hash(input)));
        let _ = std::fs::write(stem.with_extension("bin"), input);
        let one_line = what.replace('\n', " | ");
        let _ = std::fs::write(
            stem.with_extension("txt"),
            format!("{} {kind}: {one_line}\n", target.name()),
        );
        eprintln!(
            "[{}] FAILURE ({kind}): {one_line}\n    reproducer: {} (run with --reproduce)",
            target.name(),
            stem.with_extension("bin").display()
        );
    }
}

struct RunningWorker {
    child: Child,
    frames: Receiver<Frame>,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
}

fn spawn_worker(
    target: Target,
    seed: u64,
    seconds: u64,
    dir: &Path,
) -> std::io::Result<RunningWorker> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("__worker")
        .arg(target.name())
        .args(["--seed", &seed.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("stdout was piped");
    let stderr = child.stderr.take().expect("stderr was piped");
    let (tx, frames) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        while let Some(frame) = read_frame(&mut stdout) {
            if tx.send(frame).is_err() {
                break;
            }
        }
    });
    let stderr_tail = Arc::new(Mutex::new(Vec::new()));
    let tail = stderr_tail.clone();
    std::thread::spawn(move || {
        let mut stderr = stderr;
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stderr.read(&mut buf) {
            let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
            tail.extend_from_slice(&buf[..n]);
            let excess = tail.len().saturating_sub(4096);
            tail.drain(..excess);
        }
    });
    Ok(RunningWorker {
        child,
        frames,
        stderr_tail,
    })
}

/// Runs `target` in child processes for `budget`, reporting crashes and hangs with their input.
pub fn supervise(
    target: Target,
    seed: u64,
    budget: Duration,
    case_limit: Duration,
    dir: &Path,
) -> ExitCode {
    let name = target.name();
    eprintln!(
        "[{name}] seed {seed}, {} s, per-case limit {} ms, corpus {}",
        budget.as_secs(),
        case_limit.as_millis(),
        corpus_dir(dir, target).display()
    );
    let start = Instant::now();
    let deadline = start + budget;
    let mut tally = Tally::default();
    let mut restarts = 0u64;
    let mut last_report = Instant::now();
    // A worker runs whole seconds; a remainder under one is not worth a restart.
    while deadline.saturating_duration_since(Instant::now()) >= Duration::from_secs(1) {
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        let mut worker = match spawn_worker(target, seed.wrapping_add(restarts), left, dir) {
            Ok(worker) => worker,
            Err(e) => {
                eprintln!("[{name}] cannot start a worker: {e}");
                return ExitCode::from(2);
            }
        };
        restarts += 1;
        let mut current: Option<Vec<u8>> = None;
        loop {
            if last_report.elapsed() >= Duration::from_secs(30) {
                last_report = Instant::now();
                let secs = start.elapsed().as_secs_f64();
                eprintln!(
                    "[{name}] {:.0} s: {} executions ({:.1}/s), {} failures",
                    secs,
                    tally.executions,
                    tally.executions as f64 / secs,
                    tally.failures
                );
            }
            match worker.frames.recv_timeout(case_limit) {
                Ok(Frame::Start(input)) => current = Some(input),
                Ok(Frame::End) => {
                    tally.executions += 1;
                    current = None;
                }
                Ok(Frame::Fail(what)) => {
                    tally.executions += 1;
                    let input = current.take().unwrap_or_default();
                    let kind = if what.starts_with("panic") {
                        "panic"
                    } else {
                        "violation"
                    };
                    tally.failure(dir, target, kind, &input, &what);
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = worker.child.kill();
                    let _ = worker.child.wait();
                    if let Some(input) = current.take() {
                        tally.executions += 1;
                        let what =
                            format!("hang: a case ran longer than {} ms", case_limit.as_millis());
                        tally.failure(dir, target, "hang", &input, &what);
                    }
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = worker.child.wait();
                    if let Some(input) = current.take() {
                        tally.executions += 1;
                        // Let the stderr reader drain what the dying worker printed.
                        std::thread::sleep(Duration::from_millis(50));
                        let tail = worker.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
                        let tail = String::from_utf8_lossy(&tail);
                        let mut last: Vec<&str> = tail
                            .lines()
                            .rev()
                            .filter(|l| !l.trim().is_empty())
                            .take(6)
                            .collect();
                        last.reverse();
                        let what = format!(
                            "crash: the worker died ({}) mid-case; stderr ends: {}",
                            status
                                .map(|s| s.to_string())
                                .unwrap_or_else(|e| e.to_string()),
                            last.join(" | ")
                        );
                        tally.failure(dir, target, "crash", &input, &what);
                    }
                    break;
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "[{name}] done: {} executions in {:.0} s ({:.1}/s), {} failures ({} distinct), {} worker starts, corpus {} entries",
        tally.executions,
        secs,
        tally.executions as f64 / secs,
        tally.failures,
        tally.distinct.len(),
        restarts,
        load_corpus(&corpus_dir(dir, target)).len()
    );
    let mut distinct: Vec<_> = tally.distinct.iter().collect();
    distinct.sort();
    for (what, count) in distinct {
        eprintln!("[{name}]   {count}x {what}");
    }
    if tally.failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs one input in this process and prints what happened.
pub fn reproduce(target: Target, file: &Path) -> ExitCode {
    let input = match std::fs::read(file) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let _ = crate::targets::DUMP_MODULE_TO.set(file.to_path_buf());
    let outcome = run_case(target, &input);
    match outcome {
        Ok(signature) => {
            println!("ok: {signature}");
            ExitCode::SUCCESS
        }
        Err(what) => {
            println!("FAILED: {what}");
            ExitCode::FAILURE
        }
    }
}
