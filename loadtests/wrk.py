"""Drive ``wrk`` (the native HTTP load generator, Debian package ``wrk``) for the load runner.

Why a native generator: one Python client process tops out near 460 requests/s, below
what either the service or the bare baseline can serve, so a maximum found with it is the
client's. ``wrk`` (C, epoll) offers tens of thousands of requests/s on one core; the
runner reads its own CPU time (``os.wait4``) and reports it beside the servers', so a
reader can see the client was not what saturated.

Two ways it runs, both from one generated Lua script (:func:`wrk_script`):

* **closed loop** (``rate=None``): every connection sends its next request as soon as the
  previous answer arrives - the saturation throughput at that connection count, which
  ``--find-max`` steps through (:data:`CONNECTION_LADDER`).
* **fixed rate** (``rate=R``): the script's ``delay()`` gives each thread a schedule of
  one request every ``threads / R`` seconds; a request waits for its slot. If every
  connection is busy when a slot comes, the request goes late; the script counts the late
  ones and the worst lag (``late``, ``lag_max_ms``) because ``wrk`` times a request from
  when it is written, not from its slot. With enough connections (the runner opens
  ``--connections``) a late request means the server stalled.

The request bodies are the runner's (:class:`loadtests.driver.RequestMix`: real demo
customers and a share of unknown ids), formatted once per thread and taken in turn, each
thread starting at its own offset. ``done()`` prints one JSON line (:data:`MARKER`) with
the counts and latency percentiles, which :func:`parse_wrk_output` reads.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.driver import DEGRADED_MARKERS
from loadtests.stats import PhaseSummary

MARKER = "NBO_WRK_RESULT "
"""Prefix of the one line the script's ``done()`` prints (JSON follows)."""
CONNECTION_LADDER = (1, 2, 4, 8, 16, 32, 64)
"""Connection counts a closed-loop ``--find-max`` steps through, lowest first (1 and 2 find
a ceiling on a host so busy that 4 connections already queue past the p99 goal)."""
PERCENTILES = (50, 90, 95, 99, 99.9)


class WrkError(RuntimeError):
    """``wrk`` is missing, failed, or printed no result line; the message says which."""


@dataclass(frozen=True)
class WrkResult:
    """What one ``wrk`` run measured, in the units of :class:`PhaseSummary`."""

    requests: int  # answered (any status), as wrk counts them
    duration_seconds: float
    errors: dict[str, int]  # connect, read, write, status (non-2xx/3xx), timeout
    latency_ms: dict[str, float]  # "p50", "p90", "p95", "p99", "p99.9", "max", "mean"
    late: int  # fixed rate only: requests sent after their slot
    lag_max_ms: float  # fixed rate only: the latest a request was sent after its slot
    degraded: int = 0  # answers that say they had no feature record (fallback, or a miss)
    cpu_seconds: float = 0.0  # wrk's own user + system CPU (filled in by run_wrk)

    @property
    def rate(self) -> float:
        return self.requests / self.duration_seconds if self.duration_seconds > 0 else 0.0

    def summary(self, target: str, offered_rate: float | None) -> PhaseSummary:
        """As a :class:`PhaseSummary`; closed loop (``offered_rate=None``) offers what it got.

        Non-2xx answers and timeouts are not successes; connect/read/write errors are
        errors besides. ``degraded`` counts the answers the script's ``response()`` found
        a degraded marker in (:data:`loadtests.driver.DEGRADED_MARKERS`).
        """
        failed = self.errors.get("status", 0) + self.errors.get("timeout", 0)
        succeeded = max(0, self.requests - failed)
        achieved = succeeded / self.duration_seconds if self.duration_seconds > 0 else 0.0
        return PhaseSummary(
            target=target,
            offered_rate=offered_rate if offered_rate is not None else achieved,
            duration_seconds=self.duration_seconds,
            sent=self.requests + sum(self.errors.get(k, 0) for k in ("connect", "write")),
            succeeded=succeeded,
            errors={kind: n for kind, n in self.errors.items() if n},
            degraded=self.degraded,
            p50_ms=self.latency_ms.get("p50", math.nan),
            p95_ms=self.latency_ms.get("p95", math.nan),
            p99_ms=self.latency_ms.get("p99", math.nan),
            max_ms=self.latency_ms.get("max", math.nan),
            achieved_rate=achieved,
            client_lag_p99_ms=self.lag_max_ms,  # an upper bound: wrk keeps no lag histogram
        )

    def client_json(self, cores: int | None = None) -> dict[str, Any]:
        """The generator's own figures: CPU seconds, its share of one core, late requests."""
        share = self.cpu_seconds / self.duration_seconds if self.duration_seconds > 0 else 0.0
        return {
            "generator": "wrk",
            "cpu_seconds": round(self.cpu_seconds, 3),
            "cpu_cores_used": round(share, 3),
            "cores": cores or os.cpu_count(),
            "ms_per_request": round(self.cpu_seconds * 1000 / self.requests, 4)
            if self.requests
            else None,
            "late": self.late,
            "lag_max_ms": round(self.lag_max_ms, 2),
        }


def _lua_string(body: bytes) -> str:
    """A Lua string literal of ``body`` (bytes kept exactly: every byte escaped as decimal
    when it is not a plain printable ASCII character)."""
    out = []
    for byte in body:
        char = chr(byte)
        if char in '"\\' or not 32 <= byte < 127:
            out.append(f"\\{byte:03d}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def wrk_script(
    bodies: Sequence[bytes],
    *,
    path: str,
    api_key: str | None = None,
    rate: float | None = None,
    threads: int = 2,
) -> str:
    """The Lua script: POST ``bodies`` in turn to ``path``; ``rate`` (requests/s over all
    threads) adds the fixed-rate schedule; ``done()`` prints the :data:`MARKER` line."""
    if not bodies:
        raise ValueError("wrk_script needs at least one request body")
    if rate is not None and not rate > 0:
        raise ValueError(f"rate {rate!r} must be above 0")
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    header_lua = ", ".join(f"[{_lua_string(k.encode())}] = {_lua_string(v.encode())}"
                           for k, v in headers.items())  # fmt: skip
    body_lua = ",\n".join(f"  {_lua_string(b)}" for b in bodies)
    interval_ms = f"{threads * 1000.0 / rate!r}" if rate is not None else "nil"
    percentiles = ", ".join(repr(float(p)) for p in PERCENTILES)
    return _SCRIPT.format(
        path=_lua_string(path.encode()),
        headers=header_lua,
        bodies=body_lua,
        interval_ms=interval_ms,
        percentiles=percentiles,
        threads=threads,
        markers=", ".join(_lua_string(m) for m in DEGRADED_MARKERS),
        marker=_lua_string(MARKER.encode()),
    )


_SCRIPT = """\
-- Generated by loadtests/wrk.py: POST the runner's bodies in turn; print one JSON line.
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_nsec; }} nbo_timespec;
int clock_gettime(int clk_id, nbo_timespec *tp);
]]
local ts = ffi.new("nbo_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local bodies = {{
{bodies}
}}
local interval_ms = {interval_ms}
local threads = {{}}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local requests = {{}}
local turn = 0
late = 0
lag_max = 0
degraded = 0
local next_slot = nil

function init(args)
  for i, body in ipairs(bodies) do
    requests[i] = wrk.format("POST", {path}, {{ {headers} }}, body)
  end
  turn = ((id or 1) - 1) * math.floor(#requests / {threads})
end

function request()
  turn = turn % #requests + 1
  return requests[turn]
end

if interval_ms ~= nil then
  function delay()
    local now = now_ms()
    if next_slot == nil then next_slot = now end
    local wait = next_slot - now
    next_slot = next_slot + interval_ms  -- a fixed schedule: a late slot does not move it
    if wait < 0 then
      late = late + 1
      if -wait > lag_max then lag_max = -wait end
      return 0
    end
    return math.floor(wait)
  end
end

-- An answer without the customer's features: the service's fallback, or the baseline's miss.
local markers = {{ {markers} }}
function response(status, headers, body)
  for _, marker in ipairs(markers) do
    if body ~= nil and string.find(body, marker, 1, true) then
      degraded = degraded + 1
      return
    end
  end
end

function done(summary, latency, requests_)
  local total_late, worst, total_degraded = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_late = total_late + (thread:get("late") or 0)
    total_degraded = total_degraded + (thread:get("degraded") or 0)
    local lag = thread:get("lag_max") or 0
    if lag > worst then worst = lag end
  end
  local parts = {{}}
  for _, p in ipairs({{ {percentiles} }}) do
    table.insert(parts, string.format('"p%g": %.3f', p, latency:percentile(p) / 1000))
  end
  table.insert(parts, string.format('"max": %.3f', latency.max / 1000))
  table.insert(parts, string.format('"mean": %.3f', latency.mean / 1000))
  local e = summary.errors
  io.write({marker}, string.format(
    '{{"requests": %d, "duration_us": %d, "errors": {{"connect": %d, "read": %d, '
    .. '"write": %d, "status": %d, "timeout": %d}}, "latency_ms": {{%s}}, '
    .. '"late": %d, "lag_max_ms": %.3f, "degraded": %d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ", "), total_late, worst, total_degraded))
end
"""


def parse_wrk_output(stdout: str) -> WrkResult:
    """The :data:`MARKER` line of a run's output as a :class:`WrkResult`.

    Raises :class:`WrkError` quoting the end of the output when the line is missing or
    is not the JSON the script prints.
    """
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            try:
                data = json.loads(line[len(MARKER) :])
                return WrkResult(
                    requests=int(data["requests"]),
                    duration_seconds=int(data["duration_us"]) / 1e6,
                    errors={str(k): int(v) for k, v in data["errors"].items()},
                    latency_ms={str(k): float(v) for k, v in data["latency_ms"].items()},
                    late=int(data["late"]),
                    lag_max_ms=float(data["lag_max_ms"]),
                    degraded=int(data.get("degraded", 0)),
                )
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise WrkError(f"unreadable wrk result line ({exc}): {line[:300]}") from None
    tail = "\n".join(stdout.splitlines()[-10:])
    raise WrkError(f"wrk printed no result line ({MARKER.strip()}); its output ended:\n{tail}")


def wrk_path() -> str | None:
    """Where ``wrk`` is, or None (install it with ``apt-get install wrk``)."""
    return shutil.which("wrk")


def run_wrk(
    url: str,
    bodies: Sequence[bytes],
    *,
    path: str,
    duration: float,
    connections: int,
    threads: int = 2,
    rate: float | None = None,
    api_key: str | None = None,
    timeout: float = 2.0,
) -> WrkResult:
    """One ``wrk`` run against ``url`` + ``path``; its own CPU time read with ``os.wait4``."""
    binary = wrk_path()
    if binary is None:
        raise WrkError("wrk is not installed (Debian: apt-get install wrk); use --generator python")
    threads = max(1, min(threads, connections))
    script = wrk_script(bodies, path=path, api_key=api_key, rate=rate, threads=threads)
    with tempfile.TemporaryDirectory(prefix="nbo-wrk-") as tmp:
        script_path = Path(tmp) / "load.lua"
        script_path.write_text(script)
        out_path = Path(tmp) / "out.txt"
        command = [
            binary, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
            f"--timeout={max(1, math.ceil(timeout))}s", "-s", str(script_path),
            url.rstrip("/") + path,
        ]  # fmt: skip
        with out_path.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + duration + timeout + 30
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    process.returncode = os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() > deadline:
                    process.kill()
                    _, status, usage = os.wait4(process.pid, 0)
                    process.returncode = os.waitstatus_to_exitcode(status)
                    break
                time.sleep(0.05)
        output = out_path.read_text(errors="replace")
    if process.returncode != 0:
        tail = "\n".join(output.splitlines()[-10:])
        raise WrkError(f"wrk exited with {process.returncode}:\n{tail}")
    result = parse_wrk_output(output)
    return WrkResult(**{**result.__dict__, "cpu_seconds": usage.ru_utime + usage.ru_stime})
