//! The results: one markdown table of every scenario and target, the ratios
//! orchestrator/NGINX and orchestrator/direct, and the single-number results
//! next to the goals of the benches issue. `--json` prints the same data.

use serde_json::{Value, json};

use crate::Args;
use crate::drive::Outcome;
use crate::procs::Cpus;

/// One target in one scenario.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) target: String,
    pub(crate) outcome: Outcome,
    /// CPU seconds the target's process used while it was measured.
    cpu_seconds: f64,
    peak_rss_kib: u64,
    /// Payload bytes per operation, for a MiB/s column.
    bytes: Option<usize>,
}

impl Row {
    pub(crate) fn new(
        target: &str,
        outcome: Outcome,
        cpu_seconds: f64,
        peak_rss_kib: u64,
        bytes: Option<usize>,
    ) -> Self {
        Self {
            target: target.to_owned(),
            outcome,
            cpu_seconds,
            peak_rss_kib,
            bytes,
        }
    }

    /// CPU seconds per 1,000 operations (the warm-up's CPU is included, so
    /// this slightly overstates; the same way for every target).
    fn cpu_per_1k(&self) -> Option<f64> {
        (self.outcome.ok > 0).then(|| self.cpu_seconds * 1000.0 / self.outcome.ok as f64)
    }

    fn mib_per_s(&self) -> Option<f64> {
        self.bytes
            .map(|b| self.outcome.rate() * b as f64 / (1024.0 * 1024.0))
    }

    fn json(&self) -> Value {
        json!({
            "target": self.target,
            "ops": self.outcome.ok,
            "ops_per_s": round(self.outcome.rate(), 1),
            "mib_per_s": self.mib_per_s().map(|v| round(v, 1)),
            "latency_ms": {
                "p50": self.outcome.ms(0.5),
                "p90": self.outcome.ms(0.9),
                "p99": self.outcome.ms(0.99),
                "p99_9": self.outcome.ms(0.999),
            },
            "errors": self.outcome.errors,
            "first_error": self.outcome.first_error,
            "cpu_seconds_per_1000": self.cpu_per_1k().map(|v| round(v, 4)),
            "peak_rss_mib": round(self.peak_rss_kib as f64 / 1024.0, 1),
        })
    }
}

/// A single-number result, next to its goal.
#[derive(Debug, Clone)]
pub(crate) struct Fact {
    name: String,
    value: String,
    goal: String,
    met: Option<bool>,
}

impl Fact {
    pub(crate) fn new(name: &str, value: String, goal: &str, met: Option<bool>) -> Self {
        Self {
            name: name.to_owned(),
            value,
            goal: goal.to_owned(),
            met,
        }
    }
}

/// Everything one run measured.
#[derive(Debug)]
pub(crate) struct Report {
    setup: Vec<String>,
    scenarios: Vec<(String, Vec<Row>)>,
    facts: Vec<Fact>,
    notes: Vec<String>,
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

impl Report {
    pub(crate) fn new(cpus: &Cpus, args: &Args) -> Self {
        Self {
            setup: vec![
                format!(
                    "{} connections per target, {:?} per target for small GET ({} rounds, targets alternating), half that for the other scenarios",
                    args.connections, args.duration, args.rounds
                ),
                format!("CPUs: {}", cpus.describe()),
                format!(
                    "machine: {} CPUs visible before pinning; load average at start: {}",
                    cpus.total,
                    load_average()
                ),
            ],
            scenarios: Vec::new(),
            facts: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub(crate) fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    pub(crate) fn fact(&mut self, fact: Fact) {
        self.facts.push(fact);
    }

    /// Adds a scenario's rows, and the goal that scenario decides.
    pub(crate) fn rows(&mut self, scenario: &str, rows: Vec<Row>) {
        let find = |name: &str| rows.iter().find(|r| r.target == name);
        if let (Some(o), Some(n)) = (find("orchestrator"), find("nginx")) {
            let ratio = o.outcome.rate() / n.outcome.rate().max(1e-9);
            if scenario == "small GET" {
                self.facts.push(Fact::new(
                    "authenticated GET req/s, orchestrator / NGINX proxy_pass",
                    format!(
                        "{ratio:.2}× ({:.0} vs {:.0} req/s)",
                        o.outcome.rate(),
                        n.outcome.rate()
                    ),
                    "≥ 1.0×",
                    Some(ratio >= 1.0),
                ));
                if let Some(b) = find("bare hyper proxy") {
                    let r = b.outcome.rate() / n.outcome.rate().max(1e-9);
                    self.facts.push(Fact::new(
                        "(the floor of the stack) bare hyper proxy / NGINX proxy_pass",
                        format!(
                            "{r:.2}× ({:.0} req/s); orchestrator / bare proxy {:.2}×",
                            b.outcome.rate(),
                            o.outcome.rate() / b.outcome.rate().max(1e-9)
                        ),
                        "",
                        None,
                    ));
                }
                if let Some(p) = find("orchestrator (no assertion JWT)") {
                    let r = p.outcome.rate() / n.outcome.rate().max(1e-9);
                    self.facts.push(Fact::new(
                        "same, app without the assertion JWT",
                        format!("{r:.2}× ({:.0} req/s)", p.outcome.rate()),
                        "(≥ 1.0×)",
                        Some(r >= 1.0),
                    ));
                }
            }
        }
        if scenario == "small GET" {
            let traced = find("orchestrator (traces on, 100%)");
            if let (Some(o), Some(t)) = (find("orchestrator"), traced) {
                if let (Some(plain), Some(on)) = (o.cpu_per_1k(), t.cpu_per_1k()) {
                    // CPU-s per 1,000 requests is ms per request: × 1000 for µs.
                    let added = (on - plain) * 1000.0;
                    let by_rate =
                        1e6 / t.outcome.rate().max(1e-9) - 1e6 / o.outcome.rate().max(1e-9);
                    self.facts.push(Fact::new(
                        "CPU added per proxied GET by traces at 100% (same run)",
                        // The share of the untraced cost: comparable across
                        // machines of different speed, where µs are not.
                        format!(
                            "{added:.1} µs, {:+.1}% ({:.1} → {:.1} µs; by throughput {by_rate:+.1} µs)",
                            100.0 * (on - plain) / plain.max(1e-12),
                            plain * 1000.0,
                            on * 1000.0
                        ),
                        "≤ 3 µs",
                        Some(added <= 3.0),
                    ));
                }
            }
        }
        if scenario == "small GET at half max" {
            if let (Some(o), Some(d)) = (find("orchestrator"), find("direct")) {
                let added = o.outcome.ms(0.99) - d.outcome.ms(0.99);
                self.facts.push(Fact::new(
                    "p99 added over direct at half of max throughput",
                    format!(
                        "{added:.2} ms (p99 {:.2} vs {:.2} ms)",
                        o.outcome.ms(0.99),
                        d.outcome.ms(0.99)
                    ),
                    "≤ 1 ms",
                    Some(added <= 1.0),
                ));
            }
            if let (Some(n), Some(d)) = (find("nginx"), find("direct")) {
                let added = n.outcome.ms(0.99) - d.outcome.ms(0.99);
                self.facts.push(Fact::new(
                    "(for comparison) NGINX p99 added over direct, same rate",
                    format!("{added:.2} ms"),
                    "",
                    None,
                ));
            }
        }
        self.scenarios.push((scenario.to_owned(), rows));
    }

    fn ratios(&self) -> Vec<(String, String, f64, f64, f64)> {
        let mut out = Vec::new();
        for (scenario, rows) in &self.scenarios {
            let find = |name: &str| rows.iter().find(|r| r.target == name);
            let Some(o) = find("orchestrator") else {
                continue;
            };
            for base in ["nginx", "direct"] {
                if let Some(b) = find(base) {
                    out.push((
                        scenario.clone(),
                        format!("orchestrator/{base}"),
                        o.outcome.rate() / b.outcome.rate().max(1e-9),
                        o.outcome.ms(0.5) / b.outcome.ms(0.5).max(1e-9),
                        o.outcome.ms(0.99) / b.outcome.ms(0.99).max(1e-9),
                    ));
                }
            }
        }
        out
    }

    pub(crate) fn markdown(&self) -> String {
        let mut s = String::from("# Load bench\n\n");
        for line in &self.setup {
            s.push_str(&format!("- {line}\n"));
        }
        s.push_str(&format!("- load average at end: {}\n\n", load_average()));
        s.push_str(
            "| scenario | target | ops/s | MiB/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | CPU-s / 1k ops | peak RSS MiB |\n\
             | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for (scenario, rows) in &self.scenarios {
            for r in rows {
                let o = &r.outcome;
                s.push_str(&format!(
                    "| {scenario} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {:.1} |\n",
                    r.target,
                    o.rate(),
                    r.mib_per_s().map_or("".to_owned(), |v| format!("{v:.0}")),
                    o.ms(0.5),
                    o.ms(0.9),
                    o.ms(0.99),
                    o.ms(0.999),
                    o.errors,
                    r.cpu_per_1k().map_or("".to_owned(), |v| format!("{v:.3}")),
                    r.peak_rss_kib as f64 / 1024.0,
                ));
            }
        }
        let ratios = self.ratios();
        if !ratios.is_empty() {
            s.push_str(
                "\n| scenario | ratio | ops/s | p50 | p99 |\n| --- | --- | ---: | ---: | ---: |\n",
            );
            for (scenario, what, rps, p50, p99) in ratios {
                s.push_str(&format!(
                    "| {scenario} | {what} | {rps:.2}× | {p50:.2}× | {p99:.2}× |\n"
                ));
            }
        }
        if !self.facts.is_empty() {
            s.push_str("\n| result | measured | goal | met |\n| --- | --- | --- | --- |\n");
            for f in &self.facts {
                let met = match f.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "",
                };
                s.push_str(&format!(
                    "| {} | {} | {} | {met} |\n",
                    f.name, f.value, f.goal
                ));
            }
        }
        let errors: Vec<String> = self
            .scenarios
            .iter()
            .flat_map(|(sc, rows)| {
                rows.iter().filter_map(move |r| {
                    r.outcome
                        .first_error
                        .as_ref()
                        .map(|e| format!("{sc} / {}: first error: {e}", r.target))
                })
            })
            .collect();
        if !self.notes.is_empty() || !errors.is_empty() {
            s.push('\n');
            for n in self.notes.iter().chain(&errors) {
                s.push_str(&format!("- {n}\n"));
            }
        }
        s
    }

    pub(crate) fn json(&self) -> String {
        let scenarios: Vec<Value> = self
            .scenarios
            .iter()
            .map(|(name, rows)| json!({"scenario": name, "targets": rows.iter().map(Row::json).collect::<Vec<_>>()}))
            .collect();
        let ratios: Vec<Value> = self
            .ratios()
            .into_iter()
            .map(|(scenario, what, rps, p50, p99)| {
                json!({"scenario": scenario, "ratio": what, "ops_per_s": round(rps, 3), "p50": round(p50, 3), "p99": round(p99, 3)})
            })
            .collect();
        let facts: Vec<Value> = self
            .facts
            .iter()
            .map(|f| json!({"result": f.name, "measured": f.value, "goal": f.goal, "met": f.met}))
            .collect();
        let doc = json!({
            "setup": self.setup,
            "load_average_end": load_average(),
            "scenarios": scenarios,
            "ratios": ratios,
            "results": facts,
            "notes": self.notes,
        });
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }
}
