"""Idle memory per slot: start `serve` with 4 and 16 slots, fill every slot with small runs,
    then heavy ones, and print process RSS per slot after each phase.

RSS counts a page once per mapping, so the snapshot image's pages that a slot has only read
(shared with every other slot and the page cache) count again in each slot. The breakdown
after each figure says how much of the growth is anonymous (private to this process:
kept guest pages, host heap) and how much is file mappings (the image), and gives the
growth of Pss, which counts a page mapped several times only once: the physical memory.

Run from the repository root after `cargo build --release`: python3 bench/slot_memory.py
(about 30 s). The README quotes its output under "Memory per slot".
"""
import subprocess, time, json, http.client, threading, sys
def rss(pid):
    return status(pid)["VmRSS"]
def status(pid):
    fields = {}
    for l in open(f"/proc/{pid}/status"):
        k, _, v = l.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"): fields[k] = int(v.split()[0])
    # Pss counts a page mapped N times as 1/N each time: shared image pages count once.
    for l in open(f"/proc/{pid}/smaps_rollup"):
        if l.startswith("Pss:"): fields["Pss"] = int(l.split()[1])
    return fields
def growth(now, base, conc):
    return ", ".join(f"{k.removeprefix('Rss')} +{(now[k]-base[k])/conc:.0f}" for k in ("RssAnon", "RssFile", "Pss"))
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
    time.sleep(0.5); b = status(p.pid); base = b["VmRSS"]
    load(18200+conc, conc, 50, "print(1+1)")
    s = status(p.pid); small = s["VmRSS"]
    load(18200+conc, conc, 3, "x = [str(i) for i in range(300_000)]\nlen(x)")
    load(18200+conc, conc, 20, "print(1+1)")
    h = status(p.pid); heavy = h["VmRSS"]
    print(f"slots={conc}: after start {base} kB, after small runs {small} kB (+{(small-base)/conc:.0f} kB/slot: {growth(s, b, conc)}), after heavy runs {heavy} kB (+{(heavy-base)/conc:.0f} kB/slot: {growth(h, b, conc)})")
    p.terminate(); p.wait()
