"""`python -m busline.bench`: the flights demo end to end on the local cloud, and what it would be on AWS.

What is measured, and how (the modules say more):
- end-to-end seconds: POST /tasks until the WebSocket delivers the terminal snapshot. A warm-up task of
  100,000 rows (5 ranges at once) runs first, so the workers the run uses are warm (the local cloud keeps
  up to 4 per function); on AWS a burst of ranges starts extra instances cold, but each on its own CPU,
  while here their imports would take the 2 cores from the measured work. StepTimeout is raised to 300 s
  (see main.CLOUD_ARGS) so a slow one-reader extract on a busy machine is measured, not retried;
- the 1x end to end and the DuckDB script are each the median of main.RUNS_1X runs, taken in turn; the
  first 1x run is the measured one (calls, memory, cost, phases), the others are timed;
- seconds per phase: the task's own `timings` (first chunk started -> phase completed; phases overlap);
- progress latency: for every WebSocket frame, client receive time minus the snapshot's `updatedAtMs`
  (the target is over the frames of every 1x run);
- AWS calls (calls.py): moto's request recorder during each measured run, each call attributed to a
  function, an event source mapping, or the local cloud's own emulation (which AWS does not make);
- Lambda invocations, billed milliseconds, CPU and peak RSS per function (functions.py);
- baselines in the same run (baselines.py): the single-process DuckDB script, and Postgres COPY;
- the 10x run: flights ten times with the years shifted, an uncompressed csv extract can split;
- cost per task at list prices (busline_core.pricing) and a projection to 10M rows on AWS beside Step
  Functions Distributed Map and Glue (projection.py), written to docs/performance.md.
"""

from busline.bench.main import main

__all__ = ["main"]
