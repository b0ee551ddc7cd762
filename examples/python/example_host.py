#!/usr/bin/env python3
"""An example host: registers a target with the agent, starts sagas that use it, answers
their commands and waits for every saga to end.

    sagalane agent --data-dir DATA_DIR --sagas checkout.json &
    python3 example_host.py --socket DATA_DIR/agent.sock [--sagas 3]

The sagas are of the `checkout` type, declared in checkout.json beside this file: reserve an
order's stock, charge it (commands to target "billing"), then email the receipt the charge
produced. This host holds "billing": it answers "reserve" with `Reserved`, "charge" with a
`Charged` event whose payload carries a receipt number (which the saga puts in the next
command), and "email" with `Emailed`. An amount over 1000 cents is declined (`step.failed`),
so the last saga fails and sagalane compensates it: the host is sent "release" for the
reservation and answers `Released`; that saga ends compensated, the others complete. Another
saga type can be started with --saga TYPE --input JSON (one saga).

Prints one line per command it is sent and per saga end ("saga 3 completed", "saga 4
compensated: ...") and exits 0 when every saga ended as expected.
"""

import argparse
import json
import sys

from sagalane_client import Connection, exit_with


def answer(agent, frame):
    """Carries out one command and reports on it."""
    command = frame["command"]
    saga_id, step = frame["saga_id"], frame["step"]
    op = command.get("op") if isinstance(command, dict) else None
    undoing = f" (undoes step {command['compensates']})" if isinstance(command, dict) and "compensates" in command else ""
    print(f"  saga {saga_id} step {step}: {op} {command.get('order', command.get('to', ''))}{undoing}", flush=True)
    if op == "reserve":
        agent.notify("step.done", saga_id=saga_id, step=step, event="Reserved", payload={"order": command.get("order")})
    elif op in ("release", "refund"):
        agent.notify("step.done", saga_id=saga_id, step=step, event="Released" if op == "release" else "Refunded",
                     payload={"order": command.get("order")})
    elif op == "charge":
        cents = command.get("cents", 0)
        if cents > 1000:
            # No id: only an error would come back (the saga ended meanwhile, say).
            agent.notify("step.failed", saga_id=saga_id, step=step, reason=f"card declined for {cents} cents")
            return
        # The event's payload is the step's result: the saga's next command takes the receipt.
        agent.notify("step.done", saga_id=saga_id, step=step, event="Charged",
                     payload={"receipt": f"r-{command.get('order')}-{cents}", "cents": cents})
    elif op == "email":
        agent.notify("step.done", saga_id=saga_id, step=step, event="Emailed",
                     payload={"to": command.get("to"), "receipt": command.get("receipt")})
    else:
        agent.notify("step.failed", saga_id=saga_id, step=step, reason=f"no such operation: {op!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True, help="the agent's socket")
    parser.add_argument("--target", default="billing", help="the target to hold (checkout.json's is billing)")
    parser.add_argument("--sagas", type=int, default=3, help="how many sagas to start (the last one is declined and compensated)")
    parser.add_argument("--saga", default="checkout", help="the saga type to start")
    parser.add_argument("--input", help="the saga input (JSON) instead of the checkout sagas")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each frame")
    args = parser.parse_args()

    with Connection(args.socket, name="example-host", timeout=args.timeout) as agent:
        agent.call("target.register", names=[args.target])
        print(f"connected to {agent.server} (protocol {agent.version}); holding target {args.target!r}", flush=True)

        expected = {}
        if args.input is not None:
            inputs = [(json.loads(args.input), None)]
        else:
            inputs = []
            for n in range(args.sagas):
                declined = args.sagas > 1 and n == args.sagas - 1
                cents = 2500 if declined else 100 * (n + 1)
                order = {"order": f"order-{n + 1}", "cents": cents, "email": f"customer-{n + 1}@example.com"}
                inputs.append((order, "compensated" if declined else "completed"))

        # Pipelined: every start goes out before any reply is read.
        starts = [(agent.request("saga.start", saga=args.saga, input=saga_input), outcome) for saga_input, outcome in inputs]
        waits = {}
        for request_id, outcome in starts:
            saga_id = agent.wait_reply(request_id)["saga_id"]
            expected[saga_id] = outcome
            waits[agent.request("saga.wait", saga_id=saga_id, timeout_ms=int(args.timeout * 1000))] = saga_id

        ended = {}
        while len(ended) < len(waits):
            frame = agent.next_frame()
            if frame is None:
                print("the agent closed the connection", file=sys.stderr)
                return 1
            kind = frame.get("type")
            if kind == "command":
                answer(agent, frame)
            elif kind == "ok" and frame.get("id") in waits:
                saga_id = waits[frame["id"]]
                ended[saga_id] = frame["state"]
                reason = f": {frame['reason']}" if frame.get("reason") else ""
                print(f"saga {saga_id} {frame['state']}{reason}", flush=True)
            elif kind == "error":
                # A refused report or wait: say so, and fail.
                print(f"error from the agent: {frame.get('code')}: {frame.get('message')}", file=sys.stderr)
                return 1

        wrong = [s for s, state in ended.items() if expected[s] is not None and expected[s] != state]
        if wrong:
            print(f"sagas that did not end as expected: {wrong}", file=sys.stderr)
            return 1
        return 0


if __name__ == "__main__":
    exit_with(main)
