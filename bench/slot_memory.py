"""Idle memory per slot: start `serve` with 4 and 16 slots, fill every slot with small runs,
    then heavy ones, and print process RSS per slot after each phase.

Run from the repository root after `cargo build --release`: python3 bench/slot_memory.py
(about 30 s). The README quotes its output under "Memory per slot".
"""
import subprocess, time, json, http.client, threading, sys
def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
def serve(conc, port):
    p = subprocess.Popen(["./target/release/omcp-sandbox","serve","--listen",f"127.0.0.1:{port}","--max-concurrency",str(conc)], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            c=http.client.HTTPConnection("127.0.0.1",port); c.request("GET","/healthz"); c.getresponse().read(); break
        except Exception: time.sleep(0.1)
    return p
def load(port, conc, n, code):
    def worker():
        c=http.client.HTTPConnection("127.0.0.1",port)
        for _ in range(n):
            c.request("POST","/run",json.dumps({"code":code}),{"content-type":"application/json"}); c.getresponse().read()
    ts=[threading.Thread(target=worker) for _ in range(conc)]
    [t.start() for t in ts]; [t.join() for t in ts]
for conc in (4, 16):
    p = serve(conc, 18200+conc)
    time.sleep(0.5); base = rss(p.pid)
    load(18200+conc, conc, 50, "print(1+1)")
    small = rss(p.pid)
    load(18200+conc, conc, 3, "x = [str(i) for i in range(300_000)]\nlen(x)")
    load(18200+conc, conc, 20, "print(1+1)")
    heavy = rss(p.pid)
    print(f"slots={conc}: after start {base} kB, after small runs {small} kB (+{(small-base)/conc:.0f} kB/slot), after heavy runs {heavy} kB (+{(heavy-base)/conc:.0f} kB/slot)")
    p.terminate(); p.wait()
