// Helpers shared by the benchmark drivers: percentiles, and what they read
// of a process from /proc (Linux).
import fs from "node:fs";

const CLK_TCK = 100; // USER_HZ; 100 on every Linux we run on

/** A process's name and CPU seconds (user + system); null once it is gone. */
export function procCpu(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return {
      comm: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")),
      sec: (Number(f[11]) + Number(f[12])) / CLK_TCK, // utime + stime
    };
  } catch {
    return null;
  }
}

/** A process's resident memory now and at its peak, in kB; null once it is gone. */
export function procMemKb(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (key) => Number(status.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"))?.[1]);
    return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
  } catch {
    return null;
  }
}

/** The p-th percentile (nearest rank) of sorted samples; null when empty. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)];
}
