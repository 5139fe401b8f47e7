#!/usr/bin/env python3
"""lattrace.py PREFIX: joins the per-hop trace files PREFIX.* that
OPG_LATTRACE=PREFIX makes opg-bench --dispatch and the daemons write
(net/lattrace.h) by job id and prints, for the rate phase's jobs, each hop's
median and its value over the slowest 1% (by end-to-end latency) and the
median job."""
import glob, struct, sys
from collections import defaultdict

REC = struct.Struct("<QqII")
B_SENT, B_ACK, B_RESULT = 1, 2, 3
C_SUBMIT, C_ACK, C_JOB, C_RESULT, C_DELIVER, C_GETRESULT, C_LOOKUP = 10, 11, 12, 13, 14, 15, 16
C_WAKE, C_BATCH, C_COMMIT, C_DISPATCH, C_SYNCED = 20, 21, 22, 23, 24
W_JOB, W_DONE, W_SENT, W_STEP0, W_STEP1 = 30, 31, 32, 33, 34


def load(prefix):
    jobs = defaultdict(dict)
    loops = defaultdict(list)
    for path in glob.glob(prefix + ".*"):
        who = path[len(prefix) + 1:].split(".")[0]
        data = open(path, "rb").read()
        for i in range(0, len(data) - REC.size + 1, REC.size):
            jid, ns, ev, aux = REC.unpack_from(data, i)
            if jid == 0:
                loops[path].append((ns, ev, aux))
            else:
                d = jobs[jid]
                d.setdefault(ev, ns)
                if ev == B_SENT:
                    d["phase"] = aux
    return jobs, loops


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p / 100 * len(v)))] if v else float("nan")


HOPS = [
    ("client send -> coord recv", B_SENT, C_SUBMIT),
    ("coord recv -> ack sent (commit)", C_SUBMIT, C_ACK),
    ("ack sent -> Job sent", C_ACK, C_JOB),
    ("Job sent -> worker recv", C_JOB, W_JOB),
    ("worker recv -> done (step)", W_JOB, W_DONE),
    ("done -> Result sent (sign)", W_DONE, W_SENT),
    ("Result sent -> coord recv", W_SENT, C_RESULT),
    ("coord recv -> delivered (commit)", C_RESULT, C_DELIVER),
    ("delivered -> client recv", C_DELIVER, B_RESULT),
    ("(ack sent -> client ack recv)", C_ACK, B_ACK),
    ("(client ack -> coord GetResult)", B_ACK, C_GETRESULT),
]


def main():
    prefix = sys.argv[1]
    phase = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    jobs, loops = load(prefix)
    sel = [d for d in jobs.values() if d.get("phase") == phase and B_RESULT in d and all(
        e in d for e in (C_SUBMIT, C_ACK, C_JOB, W_JOB, W_DONE, W_SENT, C_RESULT, C_DELIVER))]
    if not sel:
        print("no complete jobs")
        return
    sel.sort(key=lambda d: d[B_RESULT] - d[B_SENT])
    n = len(sel)
    tail = sel[int(n * 0.99):]
    mid = sel[int(n * 0.45):int(n * 0.55)]
    e2e = [(d[B_RESULT] - d[B_SENT]) / 1e6 for d in sel]
    print(f"jobs {n} (phase {phase}), lookups {sum(1 for d in sel if C_LOOKUP in d)}: "
          f"e2e p50 {pct(e2e, 50):.2f} p99 {pct(e2e, 99):.2f} ms")
    print(f"{'hop (ms)':36s} {'p50 all':>8s} {'p99 all':>8s} {'median-job':>10s} {'slow 1%':>8s}")
    for name, a, b in HOPS:
        v = [(d[b] - d[a]) / 1e6 for d in sel if a in d and b in d]
        vm = [(d[b] - d[a]) / 1e6 for d in mid if a in d and b in d]
        vt = [(d[b] - d[a]) / 1e6 for d in tail if a in d and b in d]
        print(f"{name:36s} {pct(v, 50):8.3f} {pct(v, 99):8.3f} {pct(vm, 50):10.3f} {sum(vt) / max(1, len(vt)):8.3f}")
    # loop events over the rate phase's span
    t0 = min(d[B_SENT] for d in sel)
    t1 = max(d[B_RESULT] for d in sel)
    for path, ev in loops.items():
        ev = [e for e in ev if t0 <= e[0] <= t1]
        if "coord" in path:
            batch, commit, disp, gap, sync = [], [], [], [], []
            last = {}
            for ns, e, aux in ev:
                if e == C_WAKE:
                    if C_DISPATCH in last:
                        gap.append((ns - last[C_DISPATCH]) / 1e6)
                    last = {C_WAKE: ns}
                elif e == C_BATCH:
                    last[C_BATCH] = ns
                    batch.append((aux, (ns - last.get(C_WAKE, ns)) / 1e6))
                elif e == C_SYNCED and C_BATCH in last and C_COMMIT not in last:
                    sync.append((ns - last[C_BATCH]) / 1e6)
                elif e == C_COMMIT:
                    last[C_COMMIT] = ns
                    commit.append((ns - last.get(C_BATCH, ns)) / 1e6)
                elif e == C_DISPATCH:
                    last[C_DISPATCH] = ns
                    disp.append((ns - last.get(C_COMMIT, ns)) / 1e6)
            bn = [b[0] for b in batch]
            bt = [b[1] for b in batch]
            print(f"coord loops {len(batch)}: msgs/batch p50 {pct(bn, 50)} p99 {pct(bn, 99)} max {max(bn)}; "
                  f"handle ms p50 {pct(bt, 50):.3f} p99 {pct(bt, 99):.3f} max {max(bt):.2f}; "
                  f"commit+deliver ms p50 {pct(commit, 50):.3f} p99 {pct(commit, 99):.3f} max {max(commit):.2f}; "
                  f"sqlite commit ms p50 {pct(sync, 50):.3f} p99 {pct(sync, 99):.3f}; hb+dispatch ms p99 {pct(disp, 99):.3f}; idle gap ms p50 {pct(gap, 50):.3f}")
        elif "worker" in path:
            st, na = [], []
            s0 = None
            for ns, e, aux in ev:
                if e == W_STEP0:
                    s0 = ns
                    na.append(aux)
                elif e == W_STEP1 and s0:
                    st.append((ns - s0) / 1e6)
            if st:
                print(f"{path.split('/')[-1]}: steps {len(st)} jobs/step p50 {pct(na, 50)} max {max(na)}; "
                      f"step ms p50 {pct(st, 50):.3f} p99 {pct(st, 99):.3f} max {max(st):.2f}")


main()
