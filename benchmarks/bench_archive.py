"""Archive captioning on Ray Data against the plain CLI, on this machine, in one run.

    python benchmarks/bench_archive.py [--photos 300] [--bundle DIR] [--batch-size 8] [--beam 3] [--rounds 2]

The same folder of photos (scikit-image's real photos, cropped, flipped and resized into ``--photos``
distinct JPEGs in a temporary folder) is captioned three times with the same bundle and settings:

(a) the plain CLI: ``imgcap caption DIR --json --device cpu`` in a subprocess (the runtime uses every
    core), its output lines timed as they arrive;
(b) ``imgcap archive caption`` on a local Ray instance with all the CPUs: 1 actor holding the CPUs;
(c) the same with 2 actors, one CPU each.

Each rate is photos/s *once results flow*, so that start-up (imports, the model's build, Ray's actors)
is left out of all three alike: for the CLI from its first batch's output to its last photo's (the
first batch not counted), for the archive from its actors' first call to their last (the actors trace
the model before their first call, as the CLI does during its first batch). The wall-clock time of
each run, start-up included, is printed too. Targets: (b) within 15% of (a); (c) faster than (b) on
2 cores. The three runs alternate ``--rounds`` times and each keeps its best (other work on a shared
machine only slows a run down). Also printed: the results' size per photo, the driver's
results-writer rate and the load average.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

OVERHEAD_TARGET = 0.15


def run_cli(folder: Path, args) -> tuple[dict[str, str], float, float]:
    """``(captions by path, steady photos/s, wall seconds)`` of ``imgcap caption --json``."""
    command = [sys.executable, "-m", "imgcap_desktop.cli", "caption", str(folder), "--json", "--device", "cpu",
               "--beam", str(args.beam), "--batch-size", str(args.batch_size)]
    if args.bundle:
        command += ["--bundle", str(args.bundle)]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    captions, times = {}, []
    for line in process.stdout:
        times.append(time.monotonic())
        record = json.loads(line)
        captions[record["path"]] = record.get("caption")
    process.wait()
    wall = time.monotonic() - started
    first = min(args.batch_size, len(times))  # the first batch's lines come together
    steady = (len(times) - first) / (times[-1] - times[first - 1])
    return captions, steady, wall


def run_ray(folder: Path, out: Path, workers: int, cpus: float, args):
    from imgcap_desktop.archive.pipeline import ArchiveOptions, run_archive
    from imgcap_desktop.archive.results import read_results

    started = time.monotonic()
    report = run_archive(ArchiveOptions(roots=[folder], out=out, workers=workers, cpus_per_worker=cpus,
                                        batch_size=args.batch_size, beam=args.beam, bundle=args.bundle),
                         err=io.StringIO())
    wall = time.monotonic() - started
    if report.steady_rate is None:
        raise SystemExit("all results came back at once: use more --photos")
    rows = read_results(out, columns=["path", "caption"]).to_pylist()
    return {row["path"]: row["caption"] for row in rows}, report.steady_rate, wall, report


def driver_storing_rate(results: Path, scratch: Path, rows: int = 20_000) -> float:
    """Rows/s the driver's writer takes: the run's real rows, repeated to ``rows``, added 32 at a time."""
    import pyarrow as pa

    from imgcap_desktop.archive.results import ResultsWriter, read_results

    sample = read_results(results)
    table = pa.concat_tables([sample] * (rows // max(1, sample.num_rows) + 1)).slice(0, rows)
    started = time.perf_counter()
    with ResultsWriter(scratch, commit_rows=1000) as writer:
        for start in range(0, rows, 32):
            writer.add(table.slice(start, 32))
    return rows / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--beam", type=int, default=3)
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default: the shipped one)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternate the three runs this often; keep each one's best")
    args = parser.parse_args(argv)

    from bench_caption import make_photos
    from model.bundle import load_bundle  # first: importing the engine turns ONNX Runtime's telemetry off

    import onnxruntime
    import ray

    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="imgcap-bench-archive-") as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        paths = make_photos(folder, args.photos)
        model = load_bundle(args.bundle).name  # the runtime: ONNX Runtime where the bundle has graphs
        print(f"{len(paths)} photos, model {model}, beam {args.beam}, batch {args.batch_size}, {cpus} CPUs, "
              f"ONNX Runtime {onnxruntime.__version__}, Ray {ray.__version__}")

        ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level="WARNING",
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}})
        half = max(1, cpus // 2)
        runs = {"cli": [], "one": [], "two": []}  # (captions, photos/s, wall s) per round
        try:
            for round_ in range(args.rounds):  # alternated, so that a busy spell hits all three alike
                runs["cli"].append(run_cli(folder, args))
                runs["one"].append(run_ray(folder, Path(tmp) / f"r1-{round_}", 1, cpus, args)[:3])
                runs["two"].append(run_ray(folder, Path(tmp) / f"r2-{round_}", 2, half, args)[:3])
                print(f"round {round_ + 1}: " + ", ".join(f"{name} {rate:.2f} photos/s (wall {wall:.1f} s)"
                                                          for name, (_, rate, wall) in
                                                          ((n, r[-1]) for n, r in runs.items())))
        finally:
            ray.shutdown()
        (cli, cli_rate, cli_wall), (one, one_rate, one_wall), (two, two_rate, two_wall) = (
            max(runs[name], key=lambda run: run[1]) for name in ("cli", "one", "two"))
        print()
        print(f"best of {args.rounds} rounds:")
        print(f"(a) imgcap caption (CLI):              {cli_rate:7.2f} photos/s   wall {cli_wall:6.1f} s")
        print(f"(b) archive, 1 actor x {cpus} CPUs:        {one_rate:7.2f} photos/s   wall {one_wall:6.1f} s")
        print(f"(c) archive, 2 actors x {half} CPU{'s' if half > 1 else ''}:        "
              f"{two_rate:7.2f} photos/s   wall {two_wall:6.1f} s")

        stored_bytes = sum(f.stat().st_size for f in (Path(tmp) / "r2-0").glob("part-*.parquet"))
        storing_rate = driver_storing_rate(Path(tmp) / "r2-0", Path(tmp) / "synthetic")

    overhead = 1 - one_rate / cli_rate
    scaling = two_rate / one_rate
    same = sum(cli.get(p) == one.get(p) == two.get(p) for p in cli)
    print()
    print(f"overhead of Ray with 1 actor against the CLI: {overhead:+.1%}   target <= {OVERHEAD_TARGET:.0%}   "
          f"{'OK' if overhead <= OVERHEAD_TARGET else 'MISSED'}")
    print(f"scaling, 2 actors / 1 actor: {scaling:.2f}x   target > 1   {'OK' if scaling > 1 else 'MISSED'}")
    print(f"per-actor rate with 2 actors: {two_rate / 2:.2f} photos/s per actor "
          f"({half} CPU{'s' if half > 1 else ''} each)")
    print(f"load average while measuring (1/5/15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"same caption from the CLI and both archive runs: {same}/{len(cli)} photos")
    print(f"results on disk: {stored_bytes / len(two):.0f} bytes per photo (Parquet, zstd; no attention maps)")
    print(f"the driver's results writer: {storing_rate:,.0f} rows/s (added 32 at a time, committed every 1000)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
