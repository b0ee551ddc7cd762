#!/usr/bin/env python3
"""An example lane worker: takes jobs of a lane from the agent, runs them, answers each.

    python3 example_worker.py --socket DATA_DIR/agent.sock --lane words [--capacity 2] [--jobs N]

The lane must exist (`sagalane agent --lane words=4`, or a client's `lane.create`). A job's
payload is {"text": "..."}: the worker answers `job.done` with {"words": N, "upper": "..."};
a payload with "fail": REASON is answered `job.failed` with that reason (a job submitted with
"retry" then runs again). The worker holds up to --capacity jobs at once, as it told the agent:
with more than one, it collects what the agent pushes and answers them in turn. With --jobs N
it exits 0 after answering N jobs; otherwise it runs until the agent closes the connection.

With --submit N it first submits N jobs to the lane on a second connection (asking to be told
when each ends) and, once it has answered them, prints how each ended: a self-contained demo.
"""

import argparse
import sys

from sagalane_client import Connection, exit_with


def run(payload):
    """The job itself: returns (True, result) or (False, error)."""
    if not isinstance(payload, dict):
        return False, f"a payload must be an object, not {type(payload).__name__}"
    if "fail" in payload:
        return False, str(payload["fail"])
    text = str(payload.get("text", ""))
    return True, {"words": len(text.split()), "upper": text.upper()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True, help="the agent's socket")
    parser.add_argument("--lane", required=True, help="the lane to work for")
    parser.add_argument("--capacity", type=int, default=2, help="jobs held at once")
    parser.add_argument("--jobs", type=int, help="exit after answering this many jobs")
    parser.add_argument("--submit", type=int, help="submit this many jobs first, and report how they ended")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each frame")
    args = parser.parse_args()

    submitter = None
    if args.submit:
        submitter = Connection(args.socket, name="example-submitter", timeout=args.timeout)
        for n in range(args.submit):
            payload = {"fail": "no text to count"} if n == args.submit - 1 and args.submit > 1 else {"text": f"job number {n} of the demo"}
            submitter.call("lane.submit", lane=args.lane, job_id=f"demo-{n}", payload=payload, notify=True)
        if args.jobs is None:
            args.jobs = args.submit

    answered = 0
    with Connection(args.socket, name=f"example-worker ({args.lane})", timeout=args.timeout) as agent:
        agent.call("worker.register", lane=args.lane, capacity=args.capacity)
        print(f"working for lane {args.lane!r} with capacity {args.capacity}", flush=True)
        while args.jobs is None or answered < args.jobs:
            frame = agent.next_frame(timeout=None if args.jobs is not None else 3600)
            if frame is None:
                break
            if frame.get("type") != "job":
                if frame.get("type") == "error":
                    print(f"error from the agent: {frame.get('code')}: {frame.get('message')}", file=sys.stderr)
                continue
            ok, outcome = run(frame["payload"])
            if ok:
                agent.call("job.done", job_id=frame["job_id"], result=outcome)
            else:
                agent.call("job.failed", job_id=frame["job_id"], error=outcome)
            answered += 1
            print(f"job {frame['job_id']} (attempt {frame['attempt']}): {'done' if ok else 'failed'}", flush=True)

    if submitter is not None:
        with submitter:
            for _ in range(args.submit):
                ended = submitter.next_frame()
                while ended is not None and ended.get("type") != "lane.job.ended":
                    ended = submitter.next_frame()
                if ended is None:
                    print("the agent closed the submitter's connection", file=sys.stderr)
                    return 1
                detail = ended.get("result") if ended["state"] == "finished" else ended.get("error")
                print(f"ended {ended['job_id']}: {ended['state']} {detail}", flush=True)
    return 0


if __name__ == "__main__":
    exit_with(main)
