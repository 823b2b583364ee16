"""Benchmark of the websocket stream (`/ws`), end to end over loopback sockets.

    .venv/bin/python scripts/bench_stream.py [--quick] [--subscribers 100] [--rate 1000]

The server is `flowrun.server.create_app` under uvicorn (as `flowrun serve` runs it) in a child
process, with a few bench-only routes added there that commit transcript events straight into
its store (as a run streaming output does) and record when each commit returned. Subscribers for the
latency figure are minimal websocket clients (raw sockets under one selector per client
process: RFC 6455 framing, nothing else), so the figures measure the server rather than the
clients' own CPU; the replay and memory figures use the `websockets` client.

1. latency: N subscribers follow one run while the server commits `rate` events/s; for every
   (subscriber, event), commit -> client receipt; p50 / p99 / max. Target: p99 <= 15 ms
   (100 subscribers at 1,000 events/s on the 2-core machine).
2. replay: a new subscriber asks for a 10,000-event run from seq 0; time until the last event
   arrived. Target: <= 300 ms.
3. live: the run page's refresh (`/runs/{id}/live?after_seq=N`) on a 10,000-event run, after one
   more event; the time and the server's CPU per refresh.
4. memory: the server's resident memory with 1,000 idle subscribers (spread over 10 runs),
   over the idle server. Target: <= 100 MB.

Figures depend on the machine's load: `/proc/loadavg` is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

TOKEN = "bench-token-0123456789abcdef"
HERE = Path(__file__).resolve()


# -- the server (child process) ------------------------------------------------------------------


def serve(port: int, home: str) -> None:
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from flowrun.config import Settings
    from flowrun.flows import machine
    from flowrun.flows.enums import CheckpointMode, ExecutionMode, TranscriptKind
    from flowrun.flows.events import RunCreated, TranscriptEntry
    from flowrun.flows.run import Run
    from flowrun.flows.template import FlowTemplate
    from flowrun.server import create_app
    from flowrun.tools.auth import TokenTable

    base = f"http://127.0.0.1:{port}"
    settings = Settings.from_env({"FLOWRUN_HOME": home, "FLOWRUN_PUBLIC_URL": base})
    app = create_app(settings, TokenTable.parse([(f"{TOKEN}=bench:*", "bench")]))
    flow = FlowTemplate.model_validate({"id": "bench", "name": "Bench", "steps": [{"name": "Go", "skill": "go"}]})
    text = "Reading src/insights/reports.py to see how the weekly report totals are computed. "

    def store() -> Any:
        return app.state.web.slot.get().deps.store

    async def new_run(request: Request) -> JSONResponse:
        run = machine.create(Run(flow=flow, started_by="bench", sandbox_profile="local",
                                 execution_mode=ExecutionMode.BACKGROUND, checkpoint_mode=CheckpointMode.NONE))
        created = RunCreated(flow="bench", params={}, started_by="bench", execution_mode="background",
                             checkpoint_mode="none", sandbox_profile="local")
        run, _ = await store().create_run(run, [created])
        return JSONResponse({"run_id": run.id, "last_seq": run.last_seq})

    async def fill(request: Request) -> JSONResponse:
        """`count` transcript events; with `stream_every`, consecutive pieces share a stream id
        (as a model's streamed text does), so they fold into one block per that many."""
        body = await request.json()
        first, end, every = body.get("start", 0), body.get("start", 0) + body["count"], body.get("stream_every")
        last = 0
        for start in range(first, end, 500):
            entries = [TranscriptEntry(kind=TranscriptKind.TEXT, step=0, text=f"{n} {text}",
                                       stream=f"s{n // every}" if every else None)
                       for n in range(start, min(end, start + 500))]
            last = (await store().append_transcript(body["run_id"], entries))[-1].seq
        return JSONResponse({"last_seq": last})

    async def produce(request: Request) -> JSONResponse:
        """`count` events at `rate`/s, one commit per tick (several if it fell behind)."""
        body = await request.json()
        run_id, rate, count = body["run_id"], float(body["rate"]), int(body["count"])
        commits: dict[int, float] = {}
        lags: list[float] = []  # how late a 1 ms sleep of the server's loop wakes (CPU starvation shows here)

        async def probe() -> None:
            while True:
                asked = time.perf_counter()
                await anyio.sleep(0.001)
                lags.append((time.perf_counter() - asked - 0.001) * 1000)

        import gc

        pauses: list[float] = []
        gc_began = [0.0]

        def gc_watch(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                gc_began[0] = time.perf_counter()
            elif info["generation"] == 2:
                pauses.append((time.perf_counter() - gc_began[0]) * 1000)

        gc.callbacks.append(gc_watch)
        began = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(probe)
            await _produce(run_id, rate, count, commits, began)
            tg.cancel_scope.cancel()
        gc.callbacks.remove(gc_watch)
        lags.sort()
        return JSONResponse({"commits": commits, "seconds": time.perf_counter() - began,
                             "gc_full_ms": [round(p, 1) for p in pauses],
                             "loop_lag_ms": [round(lags[int(len(lags) * p)], 1) for p in (0.5, 0.99)] + [round(lags[-1], 1)]})

    async def _produce(run_id: str, rate: float, count: int, commits: dict[int, float], began: float) -> None:
        made = 0
        while made < count:
            due = min(count, int((time.perf_counter() - began) * rate) + 1) - made
            if due > 0:
                entries = [TranscriptEntry(kind=TranscriptKind.TEXT, step=0, text=f"{made + n} {text}")
                           for n in range(due)]
                events = await store().append_transcript(run_id, entries)
                done = time.time()
                for event in events:
                    commits[event.seq] = done
                made += due
            await anyio.sleep(max(0.0, began + made / rate - time.perf_counter()))

    async def stop(request: Request) -> JSONResponse:
        server.should_exit = True
        return JSONResponse({})

    app.router.routes += [Route("/bench/run", new_run, methods=["POST"]), Route("/bench/fill", fill, methods=["POST"]),
                          Route("/bench/produce", produce, methods=["POST"]), Route("/bench/stop", stop, methods=["POST"])]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", ws="websockets-sansio",
                            log_level="warning", ws_max_size=1024 * 1024, ws_per_message_deflate=False)
    server = uvicorn.Server(config)
    server.run()


# -- subscribers (client processes) --------------------------------------------------------------


_EVENT_SEQ = re.compile(rb'\{"type":"event","run_id":"[^"]*","seq":(\d+)')


def _seqs(payload: bytes) -> list[int]:
    """The seqs of the event messages in a frame (one, or several in a `batch`)."""
    return [int(seq) for seq in _EVENT_SEQ.findall(payload)]


def _client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame (RFC 6455 requires clients to mask)."""
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([0x80 | opcode])
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 65536:
        head += bytes([0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + size.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _handshake(host: str, port: int) -> tuple[socket.socket, bytearray]:
    import base64

    sock = socket.create_connection((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Authorization: Bearer {TOKEN}\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, rest = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head.decode(errors="replace"))
    return sock, bytearray(rest)


def _frames(buf: bytearray) -> tuple[list[tuple[int, bytes]], int]:
    """Complete server frames (opcode, payload) at the start of `buf`, and how many bytes they took."""
    out = []
    at = 0
    size = len(buf)
    while size - at >= 2:
        length = buf[at + 1] & 0x7F
        start = at + 2
        if length == 126:
            if size - at < 4:
                break
            length, start = int.from_bytes(buf[at + 2:at + 4], "big"), at + 4
        elif length == 127:
            if size - at < 10:
                break
            length, start = int.from_bytes(buf[at + 2:at + 10], "big"), at + 10
        if size < start + length:
            break
        out.append((buf[at] & 0x0F, bytes(buf[start:start + length])))
        at = start + length
    return out, at


def subscribers(base: str, run_id: str, count: int, after: int, last: int) -> None:
    """`count` minimal websocket clients (a selector over raw sockets, so the clients' own CPU
    does not swamp the figures): subscribe, print `ready`, record (seq, receipt time) until
    `last`, print the receipts as JSON. Frames read by one recv share its receipt time."""
    import selectors
    from urllib.parse import urlsplit

    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    conns = [_handshake(host, port) for _ in range(count)]
    receipts: list[list[tuple[int, float]]] = [[] for _ in range(count)]
    subscribe = json.dumps({"type": "subscribe", "run_id": run_id, "after_seq": after}).encode()
    for sock, _ in conns:
        sock.sendall(_client_frame(subscribe))
    for sock, buf in conns:  # the acks
        while not _frames(buf)[0]:
            buf += sock.recv(65536)
        frames, used = _frames(buf)
        del buf[:used]
        assert b'"ack"' in frames[0][1], frames[0]
    print("ready", flush=True)
    selector = selectors.DefaultSelector()
    for n, (sock, _) in enumerate(conns):
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, n)
    open_ = count
    closed = 0
    text_frames = 0
    while open_:
        for key, _ in selector.select(timeout=120):
            n = key.data
            sock, buf = conns[n]
            data = sock.recv(1 << 18)
            now = time.time()
            if not data:  # closed by the server (a slow consumer): count it, keep what it got
                selector.unregister(sock)
                open_ -= 1
                closed += 1
                continue
            buf += data
            frames, used = _frames(buf)
            del buf[:used]
            got = receipts[n]
            for opcode, payload in frames:
                if opcode == 9:  # keepalive ping
                    sock.setblocking(True)
                    sock.sendall(_client_frame(payload, 10))
                    sock.setblocking(False)
                elif opcode == 8:
                    pass  # close frame; the socket's EOF follows
                elif opcode == 1:
                    seqs = _seqs(payload)
                    text_frames += 1
                    got += [(seq, now) for seq in seqs]
                    if seqs and seqs[-1] >= last:
                        selector.unregister(sock)
                        open_ -= 1
    for sock, _ in conns:
        sock.close()
    times = os.times()
    print(json.dumps({"closed": closed, "frames": text_frames, "cpu_s": times.user + times.system,
                      "receipts": receipts}), flush=True)


# -- the driver ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used (load-independent cost)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def _post(base: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    import httpx2

    async with httpx2.AsyncClient(base_url=base, timeout=300, trust_env=False) as http:
        response = await http.post(path, json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


async def bench_latency(base: str, pid: int, subscribers_n: int, rate: float, seconds: float,
                        procs: int) -> dict[str, Any]:
    run = await _post(base, "/bench/run", {})
    count = int(rate * seconds)
    after, last = run["last_seq"], run["last_seq"] + count
    per = [subscribers_n // procs + (1 if i < subscribers_n % procs else 0) for i in range(procs)]
    children = []
    for n in per:
        if n:
            children.append(subprocess.Popen(  # noqa: ASYNC220 - started once, read in threads
                [sys.executable, str(HERE), "--clients", base, run["run_id"], str(n), str(after), str(last)],
                stdout=subprocess.PIPE, text=True))
    for child in children:
        assert child.stdout is not None
        line = await anyio.to_thread.run_sync(child.stdout.readline)
        assert line.strip() == "ready", line
    cpu = _cpu_s(pid)
    produced = await _post(base, "/bench/produce", {"run_id": run["run_id"], "rate": rate, "count": count})
    commits = {int(k): v for k, v in produced["commits"].items()}
    latencies: list[float] = []
    missing = 0
    outputs = []
    for child in children:
        assert child.stdout is not None
        outputs.append(await anyio.to_thread.run_sync(child.stdout.read))
        child.wait(60)
    cpu = _cpu_s(pid) - cpu
    closed = frames = 0
    clients_cpu = 0.0
    for out in outputs:
        result = json.loads(out.strip().splitlines()[-1])
        closed += result["closed"]
        clients_cpu += result["cpu_s"]
        frames += result["frames"]
        for receipts in result["receipts"]:
            seqs = [seq for seq, _ in receipts]
            assert seqs == list(range(after + 1, after + 1 + len(seqs))), "gap or duplicate in the stream"
            latencies += [(t - commits[seq]) * 1000 for seq, t in receipts]
            missing += count - len(receipts)
    return {"subscribers": subscribers_n, "rate_per_s": rate, "events": count, "produced_s": round(produced["seconds"], 2),
            "deliveries": len(latencies), "frames": frames,
            "events_per_frame": round(len(latencies) / max(1, frames), 2), "missing": missing,
            "closed_as_slow": closed, "p50_ms": round(_pct(latencies, 0.50), 2),
            "p99_ms": round(_pct(latencies, 0.99), 2), "max_ms": round(max(latencies), 2),
            "mean_ms": round(statistics.fmean(latencies), 2), "server_cpu_s": round(cpu, 2), "clients_cpu_s": round(clients_cpu, 2),
            "server_cpu_us_per_delivery": round(cpu * 1e6 / max(1, len(latencies)), 1),
            "server_loop_lag_ms_p50_p99_max": produced["loop_lag_ms"], "server_full_gc_ms": produced["gc_full_ms"]}


def _replay_once(base: str, run_id: str, last: int) -> float:
    """Milliseconds from sending the subscribe to holding event `last` (a minimal client)."""
    from urllib.parse import urlsplit

    parts = urlsplit(base)
    sock, buf = _handshake(parts.hostname or "127.0.0.1", parts.port or 80)
    with sock:
        began = time.perf_counter()
        sock.sendall(_client_frame(json.dumps({"type": "subscribe", "run_id": run_id, "after_seq": 0}).encode()))
        seen = 0
        while True:
            frames, used = _frames(buf)
            del buf[:used]
            for opcode, payload in frames:
                seqs = _seqs(payload) if opcode == 1 else []
                seen += len(seqs)
                if seqs and seqs[-1] >= last:
                    assert seen == last, (seen, last)
                    return (time.perf_counter() - began) * 1000
            buf += sock.recv(1 << 18)


async def bench_replay(base: str, pid: int, events: int, rounds: int) -> dict[str, Any]:
    run = await _post(base, "/bench/run", {})
    last = (await _post(base, "/bench/fill", {"run_id": run["run_id"], "count": events}))["last_seq"]
    timings = []
    cpu = _cpu_s(pid)
    for _ in range(rounds):
        timings.append(await anyio.to_thread.run_sync(_replay_once, base, run["run_id"], last))
    cpu = _cpu_s(pid) - cpu
    return {"events": last, "rounds": rounds, "best_ms": round(min(timings), 1),
            "median_ms": round(statistics.median(timings), 1), "server_cpu_ms_per_replay": round(cpu * 1000 / rounds)}


async def bench_live(base: str, pid: int, events: int, rounds: int) -> dict[str, Any]:
    """The run page's refresh (`/runs/{id}/live?after_seq=N`) on a run of `events` events,
    after one more event (what a page does while it follows a run); and the first load."""
    import httpx2

    run = await _post(base, "/bench/run", {})
    every = 50
    last = (await _post(base, "/bench/fill", {"run_id": run["run_id"], "count": events, "stream_every": every}))
    last_seq = last["last_seq"]
    refresh: list[float] = []
    async with httpx2.AsyncClient(base_url=base, timeout=300, trust_env=False,
                                  headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        began = time.perf_counter()
        page = await http.get(f"/runs/{run['run_id']}")
        first_ms = (time.perf_counter() - began) * 1000
        assert page.status_code == 200, page.status_code
        cpu = _cpu_s(pid)
        for n in range(rounds):
            after = last_seq
            last_seq = (await _post(base, "/bench/fill", {"run_id": run["run_id"], "count": 1, "stream_every": every,
                                                          "start": events + n}))["last_seq"]
            began = time.perf_counter()
            response = await http.get(f"/runs/{run['run_id']}/live", params={"after_seq": after})
            refresh.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200 and response.json()["seq"] == last_seq, response.text[:200]
        cpu = _cpu_s(pid) - cpu
        size = len(response.content)
    return {"events": last_seq, "blocks": events // every, "first_page_ms": round(first_ms, 1), "rounds": rounds,
            "refresh_p50_ms": round(statistics.median(refresh), 1), "refresh_p90_ms": round(_pct(refresh, 0.9), 1),
            "refresh_server_cpu_ms": round(cpu * 1000 / rounds, 1), "refresh_bytes": size}


async def bench_memory(base: str, pid: int, idle: int, runs: int) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    ids = [(await _post(base, "/bench/run", {}))["run_id"] for _ in range(runs)]
    for run_id in ids:
        await _post(base, "/bench/fill", {"run_id": run_id, "count": 50})
    url = base.replace("http", "ws") + "/ws"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with connect(url, additional_headers=headers, proxy=None, compression=None) as warm:  # warm up
        await warm.send(json.dumps({"type": "subscribe", "run_id": ids[0]}))
        await warm.recv()
    await anyio.sleep(1)
    before = _rss_mb(pid)
    done = anyio.Event()
    connected = 0
    ready = anyio.Event()

    async def one(n: int) -> None:
        nonlocal connected
        async with connect(url, additional_headers=headers, proxy=None, compression=None, max_queue=None,
                           open_timeout=60) as ws:
            await ws.send(json.dumps({"type": "subscribe", "run_id": ids[n % runs], "after_seq": 0}))
            seen = 0
            while seen < 51:  # the ack and the 50 events replayed (several to a `batch` frame)
                frame = json.loads(await ws.recv())
                seen += len(frame["messages"]) if frame["type"] == "batch" else 1
            connected += 1
            if connected == idle:
                ready.set()
            await done.wait()

    async with anyio.create_task_group() as tg:
        for n in range(idle):
            tg.start_soon(one, n)
        with anyio.fail_after(300):
            await ready.wait()
        await anyio.sleep(2)  # idle for a moment: feeds poll, keepalives tick
        during = _rss_mb(pid)
        done.set()
    return {"idle_subscribers": idle, "runs": runs, "idle_server_mb": round(before, 1),
            "with_subscribers_mb": round(during, 1), "over_idle_mb": round(during - before, 1),
            "per_subscriber_kb": round((during - before) * 1024 / idle, 1)}


async def main(args: argparse.Namespace) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as home:
        server = subprocess.Popen([sys.executable, str(HERE), "--serve", str(port), home])  # noqa: ASYNC220
        try:
            import httpx2

            async with httpx2.AsyncClient(timeout=5, trust_env=False) as http:
                with anyio.fail_after(60):
                    while True:
                        try:
                            if (await http.get(f"{base}/healthz")).status_code == 200:
                                break
                        except httpx2.TransportError:
                            pass
                        await anyio.sleep(0.1)
            report: dict[str, Any] = {"loadavg": os.getloadavg(), "cpus": os.cpu_count()}
            only = set(args.only or ["memory", "replay", "live", "latency"])
            if "memory" in only:
                report["memory"] = await bench_memory(base, server.pid, 100 if args.quick else args.idle, 10)
                print(json.dumps({"memory": report["memory"]}), flush=True)
            if "replay" in only:
                report["replay"] = await bench_replay(base, server.pid, 1000 if args.quick else 10_000, 3)
                print(json.dumps({"replay": report["replay"]}), flush=True)
            if "live" in only:
                report["live"] = await bench_live(base, server.pid, 1000 if args.quick else 10_000, 20)
                print(json.dumps({"live": report["live"]}), flush=True)
            if "latency" in only:
                report["latency"] = await bench_latency(base, server.pid, 10 if args.quick else args.subscribers,
                                                        args.rate, 1.0 if args.quick else args.seconds,
                                                        args.client_procs)
                print(json.dumps({"latency": report["latency"]}), flush=True)
            print(json.dumps(report, indent=2))
        finally:
            if os.environ.get("BENCH_PROFILE"):
                await _post(base, "/bench/stop", {})
            else:
                server.terminate()
            server.wait(30)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        if os.environ.get("BENCH_PROFILE", "").endswith(".html"):  # a pyinstrument (sampling) report
            from pyinstrument import Profiler

            with Profiler(interval=0.0005, async_mode="disabled") as profiler:
                serve(int(sys.argv[2]), sys.argv[3])
            Path(os.environ["BENCH_PROFILE"]).write_text(profiler.output_html())
            Path(os.environ["BENCH_PROFILE"][:-5] + ".txt").write_text(profiler.output_text(show_all=False))
        elif os.environ.get("BENCH_PROFILE"):  # where does the server's time go: a cProfile dump
            import cProfile

            cProfile.run("serve(int(sys.argv[2]), sys.argv[3])", os.environ["BENCH_PROFILE"])
        else:
            serve(int(sys.argv[2]), sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "--clients":
        base, run_id, n, after, last = sys.argv[2:7]
        subscribers(base, run_id, int(n), int(after), int(last))
    else:
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
        parser.add_argument("--subscribers", type=int, default=100)
        parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
        parser.add_argument("--seconds", type=float, default=5.0)
        parser.add_argument("--idle", type=int, default=1000, help="idle subscribers for the memory figure")
        parser.add_argument("--only", action="append", choices=["memory", "replay", "live", "latency"],
                            help="run only this part (repeatable)")
        parser.add_argument("--client-procs", type=int, default=2, help="client processes for the subscribers")
        anyio.run(main, parser.parse_args())
