// phoenix_js — the phoenix.js baseline of bench/run: what a user would write
// instead of using phxd, the official Phoenix JavaScript client (npm
// "phoenix") on Node.js with "ws" as its WebSocket, talking to phxsim
// directly.  Same server, payloads and records as bench/rtt, bench/fanout
// and bench/direct.
//
//   node bench/phoenix_js.mjs rtt [--clients N] [--count M] [--size S] [--warmup W]
//       N sockets, each joined to its own topic, each doing M sequential
//       push("echo") → reply round trips (after W unmeasured), all at once.
//   node bench/phoenix_js.mjs fanout [--subs N] [--count M] [--size S]
//       N sockets joined to one topic; phxsim FLOODs M broadcasts of about
//       S bytes; timed until every socket has all.
//
// Starts phxsim (PHXSIM_BIN, or ./tests/phxsim/phxsim) on a free loopback
// port and stops it at the end.  One JSON record on stdout.
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";

import { Socket } from "phoenix";
import WebSocket from "ws";

const CLK_TCK = 100; // Linux's USER_HZ, what /proc/PID/stat counts in

function usage() {
  process.stderr.write("usage: phoenix_js.mjs rtt|fanout [--clients N|--subs N] " +
    "[--count M] [--size S] [--warmup W]\n");
  process.exit(2);
}

function parseArgs(argv) {
  const o = { mode: argv[0], n: 1, count: 10000, size: 200, warmup: 100 };
  if (o.mode !== "rtt" && o.mode !== "fanout") usage();
  for (let i = 1; i < argv.length; i += 2) {
    const v = Number(argv[i + 1]);
    if (!Number.isInteger(v) || v < 0) usage();
    switch (argv[i]) {
      case "--clients": case "--subs": o.n = v; break;
      case "--count": o.count = v; break;
      case "--size": o.size = v; break;
      case "--warmup": o.warmup = v; break;
      default: usage();
    }
  }
  if (o.n < 1 || o.count < 1 || o.size < 16) usage();
  return o;
}

function cpuOf(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime, stime
  } catch {
    return 0;
  }
}

function selfCpu() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function now() {
  return Number(process.hrtime.bigint()) / 1e9;
}

function pct(sorted, p) {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.max(rank, 1) - 1];
}

function record(scenario, kase, fields) {
  process.stdout.write(JSON.stringify({ scenario, path: "js", case: kase, ...fields }) + "\n");
}

// phxsim on a free port; resolves to { proc, port, ctl, dir }.
function startSim() {
  const bin = process.env.PHXSIM_BIN || "./tests/phxsim/phxsim";
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phxjs-"));
  const ctl = path.join(dir, "sim.sock");
  const proc = spawn(bin, ["--listen", "127.0.0.1:0", "--control", ctl, "--quiet"],
    { stdio: ["ignore", "pipe", "inherit"] });
  process.on("exit", () => proc.kill("SIGKILL"));
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: proc.stdout });
    const timer = setTimeout(() => reject(new Error("phxsim did not start")), 8000);
    rl.once("line", (line) => {
      clearTimeout(timer);
      const m = /^listening (\S+) (\d+)$/.exec(line);
      if (!m) return reject(new Error(`phxsim said '${line}'`));
      resolve({ proc, port: Number(m[2]), ctl, dir });
    });
    proc.once("exit", (code) => reject(new Error(`phxsim exited (${code})`)));
  });
}

function stopSim(sim) {
  sim.proc.kill("SIGTERM");
  fs.rmSync(sim.dir, { recursive: true, force: true });
}

function connect(port) {
  const socket = new Socket(`ws://127.0.0.1:${port}/socket`, {
    transport: WebSocket,
    reconnectAfterMs: () => 1000,
  });
  socket.connect();
  return socket;
}

function join(socket, topic) {
  const ch = socket.channel(topic, {});
  return new Promise((resolve, reject) => {
    ch.join()
      .receive("ok", () => resolve(ch))
      .receive("error", (r) => reject(new Error(`join ${topic}: ${JSON.stringify(r)}`)))
      .receive("timeout", () => reject(new Error(`join ${topic}: timeout`)));
  });
}

async function rtt(o, sim) {
  const payload = { pad: "x".repeat(o.size - 10) }; // {"pad":"xx…"}: size bytes
  const sockets = [];
  const chans = [];
  for (let i = 0; i < o.n; i++) {
    sockets.push(connect(sim.port));
    chans.push(await join(sockets[i], `bench:rtt:${i}`));
  }
  const lat = [];
  const cpuSim0 = cpuOf(sim.proc.pid);
  const cpuMe0 = selfCpu();
  const t0 = now();
  await Promise.all(chans.map((ch) => new Promise((resolve, reject) => {
    let left = o.count;
    let warm = o.warmup;
    const next = () => {
      const ts = process.hrtime.bigint();
      ch.push("echo", payload)
        .receive("ok", () => {
          if (warm > 0) {
            warm--;
          } else {
            lat.push(Number(process.hrtime.bigint() - ts) / 1e3);
            if (--left === 0) return resolve();
          }
          next();
        })
        .receive("error", () => reject(new Error("push refused")))
        .receive("timeout", () => reject(new Error("push timeout")));
    };
    next();
  })));
  const secs = now() - t0;
  lat.sort((a, b) => a - b);
  record("rtt", `c${o.n}`, {
    clients: o.n, count: o.count, size: o.size,
    p50_us: pct(lat, 50), p90_us: pct(lat, 90), p99_us: pct(lat, 99), max_us: pct(lat, 100),
    rt_per_s: (o.n * (o.count + o.warmup)) / secs,
    server_cpu_share: (cpuOf(sim.proc.pid) - cpuSim0) / secs,
    client_cpu_share: (selfCpu() - cpuMe0) / secs,
  });
  sockets.forEach((s) => s.disconnect());
}

function flood(ctl, count, size) {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(ctl, () => c.write(`FLOOD bench:fan ev ${count} ${size}\n`));
    c.on("error", reject);
    resolve(c);
  });
}

async function fanout(o, sim) {
  const sockets = [];
  const chans = [];
  for (let i = 0; i < o.n; i++) sockets.push(connect(sim.port));
  for (let i = 0; i < o.n; i++) chans.push(await join(sockets[i], "bench:fan"));
  let done = 0;
  let finish;
  const all = new Promise((resolve) => { finish = resolve; });
  for (const ch of chans) {
    let got = 0;
    ch.on("ev", () => {
      if (++got === o.count && ++done === o.n) finish();
    });
  }
  const cpuSim0 = cpuOf(sim.proc.pid);
  const cpuMe0 = selfCpu();
  const t0 = now();
  const ctl = await flood(sim.ctl, o.count, o.size);
  await all;
  const secs = now() - t0;
  ctl.destroy();
  record("fanout", `s${o.n}`, {
    subs: o.n, count: o.count, size: o.size, seconds: secs,
    delivered_per_s: (o.n * o.count) / secs, per_sub_per_s: o.count / secs,
    server_cpu_share: (cpuOf(sim.proc.pid) - cpuSim0) / secs,
    client_cpu_share: (selfCpu() - cpuMe0) / secs,
  });
  sockets.forEach((s) => s.disconnect());
}

const opts = parseArgs(process.argv.slice(2));
const sim = await startSim();
const deadline = setTimeout(() => {
  process.stderr.write("phoenix_js: timed out\n");
  process.exit(1);
}, 600000);
try {
  await (opts.mode === "rtt" ? rtt(opts, sim) : fanout(opts, sim));
} catch (e) {
  process.stderr.write(`phoenix_js: ${e.message}\n`);
  process.exitCode = 1;
}
clearTimeout(deadline);
stopSim(sim);
process.exit();
