// CPU time per process, from Linux's /proc, so the throughput part can say where a request's time
// goes and not only how many requests a second went through. `wrangler dev` runs three processes per
// Worker: wrangler itself (Node: logs, dev tooling), a workerd running wrangler's proxy in front,
// and the workerd that runs the Worker (with local D1 in it). Each is in the process group of the
// wrangler process that local-stack.ts started detached.
import { readdirSync, readFileSync } from "node:fs";

export interface GroupCpu {
  /** The workerd that runs the Worker and its bindings, local D1 included (one JavaScript thread). */
  worker: number;
  /** wrangler's proxy workerd, in front of the Worker. */
  proxy: number;
  /** wrangler's Node process: reads and prints the Worker's logs. */
  wrangler: number;
}

const TICK_MS = 10; // USER_HZ is 100 on Linux

type Role = keyof GroupCpu;

/** Calls `visit` for each live process of a process group, with its role and its /proc/<pid>/stat fields. */
function eachGroupProcess(pgid: number, visit: (pid: string, role: Role, fields: string[]) => void): void {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    let cmdline: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
    } catch {
      continue; // gone meanwhile
    }
    // Fields after "(comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[2]) !== pgid) continue;
    const role: Role = !cmdline.includes("workerd")
      ? "wrangler"
      : cmdline.includes("--inspector-addr")
        ? "worker"
        : "proxy";
    visit(entry, role, fields);
  }
}

/** CPU milliseconds used so far by the processes of one process group, by role. */
export function groupCpuMs(pgid: number): GroupCpu {
  const cpu: GroupCpu = { worker: 0, proxy: 0, wrangler: 0 };
  eachGroupProcess(pgid, (_pid, role, fields) => {
    cpu[role] += (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  });
  return cpu;
}

/** Time on a CPU and time runnable but waiting for one (the run queue), in ms, of some threads. */
export interface Scheduled {
  runMs: number;
  waitMs: number;
}

/**
 * What the scheduler did for a process group's threads so far, by role: from each thread's
 * /proc/<pid>/task/<tid>/schedstat (ns on a CPU, ns waiting on a run queue, timeslices). On a machine
 * with more runnable threads than cores, `waitMs` is the time a request spent ready but not running.
 */
export function groupScheduledMs(pgid: number): Record<Role, Scheduled> {
  const scheduled: Record<Role, Scheduled> = {
    worker: { runMs: 0, waitMs: 0 },
    proxy: { runMs: 0, waitMs: 0 },
    wrangler: { runMs: 0, waitMs: 0 },
  };
  eachGroupProcess(pgid, (pid, role) => {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      return;
    }
    for (const task of tasks) {
      try {
        const [run, wait] = readFileSync(`/proc/${pid}/task/${task}/schedstat`, "utf8").split(" ");
        scheduled[role].runMs += Number(run) / 1e6;
        scheduled[role].waitMs += Number(wait) / 1e6;
      } catch {
        // the thread ended meanwhile
      }
    }
  });
  return scheduled;
}

/** CPU milliseconds used so far by a whole process group (the simulator's Node process). */
export function totalCpuMs(pgid: number): number {
  const { worker, proxy, wrangler } = groupCpuMs(pgid);
  return worker + proxy + wrangler;
}

/** This process's CPU milliseconds so far (the load generator). */
export function ownCpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}
