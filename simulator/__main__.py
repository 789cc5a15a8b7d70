"""``python -m simulator``: serve all four vendor APIs on loopback and print the
environment to export."""

from __future__ import annotations

import argparse
import shlex

import uvicorn

from simulator.app import VENDORS, Simulator, vendor_module


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback only by default)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated data")
    parser.add_argument("--volume", type=int, default=None, help="records per day, every vendor")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    parser.add_argument("--quiet", action="store_true", help="do not print the environment")
    args = parser.parse_args(argv)

    settings = {}
    for name in VENDORS:
        s = vendor_module(name).Settings()
        s.seed = args.seed
        if args.volume is not None:
            s.volume = args.volume
        settings[name] = s
    sim = Simulator(settings=settings)
    sim.state.latency_s = args.latency_ms / 1000.0
    if not args.quiet:
        for key, value in sim.env(f"http://{args.host}:{args.port}").items():
            print(f"export {key}={shlex.quote(value)}")
        print(f"# simulator listening on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    uvicorn.run(sim.build(), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
