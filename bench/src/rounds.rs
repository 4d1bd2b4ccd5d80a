//! Interleaved measurement: ours and its baselines in short alternating
//! rounds (A B A B …), so that a burst of load from elsewhere lands on
//! every side alike; each round records the throughput, the latency and
//! the CPU time per operation of the server process under test.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde::Serialize;

use crate::stats::{Samples, Spread};

/// What one run of a contender measured.
#[derive(Debug, Default, Clone)]
pub struct Measured {
    pub samples: Samples,
    /// CPU time the contender measured itself: for work done in this
    /// process, on one thread (the in-process issuance limit).
    pub cpu: Option<Duration>,
}

/// Runs a contender for the given time.
pub type Run =
    Box<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = Measured> + Send>> + Send + Sync>;

/// One side of a comparison.
pub struct Contender {
    pub name: String,
    /// The server process whose CPU time is charged to the operations
    /// (`None`: the run measures its own CPU time, or none).
    pub server: Option<u32>,
    pub run: Run,
}

impl Contender {
    /// `workers` copies of `op` driven against the server process `server`.
    pub fn driven<F, Fut>(name: &str, server: Option<u32>, workers: usize, op: F) -> Self
    where
        F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Contender {
            name: name.into(),
            server,
            run: Box::new(move |d| {
                let op = op.clone();
                Box::pin(async move {
                    Measured {
                        samples: drive(workers, d, op).await,
                        cpu: None,
                    }
                })
            }),
        }
    }
}

/// One contender's figures over one round.
#[derive(Debug, Clone, Serialize)]
pub struct RoundFigure {
    pub ops: usize,
    pub errors: u64,
    pub seconds: f64,
    /// Operations per second.
    pub throughput: f64,
    /// CPU time of the server process (user + system, `/proc/<pid>/stat`)
    /// per operation, in ms; for the in-process limit, of the thread that
    /// ran it.
    pub cpu_ms_per_op: Option<f64>,
    /// CPU time of the whole `pki-bench` process (the load generator, and
    /// any in-process work) per operation, in ms.
    pub harness_cpu_ms_per_op: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Ours (contender 0) and its baselines, measured in alternating rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub name: String,
    pub unit: String,
    pub contenders: Vec<String>,
    pub round_seconds: f64,
    /// One row per round, one entry per contender, in the order run.
    pub rounds: Vec<Vec<RoundFigure>>,
}

impl Comparison {
    /// `f` of each round, as a median and its range.
    pub fn over_rounds(&self, f: impl Fn(&[RoundFigure]) -> f64) -> Spread {
        Spread::of(&self.rounds.iter().map(|r| f(r)).collect::<Vec<_>>())
    }

    /// Contender `i`'s throughput over the rounds.
    pub fn throughput(&self, i: usize) -> Spread {
        self.over_rounds(|r| r[i].throughput)
    }

    /// Contender `i`'s CPU per operation over the rounds (ms).
    pub fn cpu(&self, i: usize) -> Spread {
        self.over_rounds(|r| r[i].cpu_ms_per_op.unwrap_or(f64::NAN))
    }

    /// Contender `i`'s throughput over contender `j`'s, round by round.
    pub fn rate_ratio(&self, i: usize, j: usize) -> Spread {
        self.over_rounds(|r| r[i].throughput / r[j].throughput)
    }

    /// Contender `i`'s CPU per operation over contender `j`'s, round by
    /// round.
    pub fn cpu_ratio(&self, i: usize, j: usize) -> Spread {
        self.over_rounds(|r| {
            r[i].cpu_ms_per_op.unwrap_or(f64::NAN) / r[j].cpu_ms_per_op.unwrap_or(f64::NAN)
        })
    }

    /// Contender `i`'s latency percentile `p` (from each round's own
    /// percentile), over the rounds.
    pub fn latency(&self, i: usize, p99: bool) -> Spread {
        self.over_rounds(|r| if p99 { r[i].p99_ms } else { r[i].p50_ms })
    }
}

/// Runs every contender for `warmup` (not recorded), then `rounds` rounds
/// of `round` each, the contenders one after the other in every round.
pub async fn interleave(
    name: &str,
    unit: &str,
    contenders: &[Contender],
    rounds: usize,
    round: Duration,
    warmup: Duration,
) -> anyhow::Result<Comparison> {
    for c in contenders {
        (c.run)(warmup).await;
    }
    let mut rows = Vec::new();
    for _ in 0..rounds {
        let mut row = Vec::new();
        for c in contenders {
            row.push(measure(c, round).await?);
        }
        rows.push(row);
    }
    for (i, c) in contenders.iter().enumerate() {
        let errors: u64 = rows.iter().map(|r| r[i].errors).sum();
        if errors > 0 {
            eprintln!("{name}: {}: {errors} operations failed", c.name);
        }
    }
    Ok(Comparison {
        name: name.into(),
        unit: unit.into(),
        contenders: contenders.iter().map(|c| c.name.clone()).collect(),
        round_seconds: round.as_secs_f64(),
        rounds: rows,
    })
}

/// One run of `c` for `d`, with the server's and this process's CPU time
/// read around it (after a short pause, so the server's side of the last
/// closes is counted).
pub async fn measure(c: &Contender, d: Duration) -> anyhow::Result<RoundFigure> {
    let pid = c.server.map(|p| p.to_string());
    let server_before = pid.as_deref().map(cpu_time).transpose()?;
    let harness_before = cpu_time("self")?;
    let m = (c.run)(d).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let harness = cpu_time("self")?.saturating_sub(harness_before);
    let server = match (pid.as_deref(), server_before) {
        (Some(pid), Some(before)) => Some(cpu_time(pid)?.saturating_sub(before)),
        _ => m.cpu,
    };
    let ops = m.samples.count();
    let per_op = |cpu: Duration| cpu.as_secs_f64() * 1e3 / ops.max(1) as f64;
    Ok(RoundFigure {
        ops,
        errors: m.samples.errors,
        seconds: m.samples.elapsed.as_secs_f64(),
        throughput: m.samples.rate(),
        cpu_ms_per_op: server.map(per_op),
        harness_cpu_ms_per_op: per_op(harness),
        p50_ms: m.samples.percentile_ms(50.0),
        p99_ms: m.samples.percentile_ms(99.0),
    })
}

/// Runs `workers` copies of `op` until `duration` has passed.
pub async fn drive<F, Fut>(workers: usize, duration: Duration, op: F) -> Samples
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let op = op.clone();
        tasks.spawn(async move {
            let mut s = Samples::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                match op(w).await {
                    Ok(()) => s.record(t.elapsed()),
                    Err(_) => s.errors += 1,
                }
            }
            s
        });
    }
    gather(tasks, start).await
}

/// Merges the samples of every finished task; the elapsed time runs from
/// `start`, when the first task began.
pub async fn gather(mut tasks: tokio::task::JoinSet<Samples>, start: Instant) -> Samples {
    let mut all = Samples::default();
    while let Some(s) = tasks.join_next().await {
        if let Ok(s) = s {
            all.merge(s);
        }
    }
    all.elapsed = start.elapsed();
    all
}

/// The CPU time (user and system) process `pid` has used so far, from
/// `/proc/<pid>/stat` (`"self"`: this process, every thread included;
/// `"thread-self"`: the calling thread alone).
pub fn cpu_time(pid: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: the fields that
    // follow it start after the last `)`, with field 3 (the state).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(n - 3)
            .ok_or_else(|| anyhow!("/proc/{pid}/stat has no field {n}"))?
            .parse()?)
    };
    // utime and stime (fields 14 and 15), in clock ticks: USER_HZ, which
    // Linux fixes at 100 for user space.
    let ticks = field(14)? + field(15)?;
    Ok(Duration::from_millis(ticks * 10))
}

/// One figure at several numbers of concurrent clients.
#[derive(Debug, Clone, Serialize)]
pub struct Scaling {
    pub name: String,
    pub unit: String,
    pub points: Vec<ScalePoint>,
}

/// [`Scaling`] at one number of clients.
#[derive(Debug, Clone, Serialize)]
pub struct ScalePoint {
    pub clients: usize,
    #[serde(flatten)]
    pub figures: RoundFigure,
}
