"""Cost-model constants measured by ``benchmarks/calibrate_costs.py`` (generated: edit
by re-running it on a 2-core machine with nothing else running)."""

# 2026-12-02, horizons 3 and 6 days, small world, seed 100
JOB_OVERHEAD_S = 0.467  # per job: report, setup (median)
SWEEP_OVERHEAD_S = 4.787  # per sweep: start-up, precheck, comparison and sweep report
REPORT_BYTES = 120000
# per preset: seconds per request at 1,000 items (serve, respond, log, metrics); seconds per retrain
# (fit + quality probe) fixed and per training click; clicks and bytes per request
PRESETS: dict[str, dict] = {
    "greedy": {
        "selector": "Greedy",
        "serve_s": 0.000105392,
        "fit_s": 0.224034,
        "fit_s_per_click": 0,
        "clicks_per_request": 0.882784,
        "bytes_per_request": 141.65,
    },
    "thompson": {
        "selector": "Thompson",
        "serve_s": 0.000431655,
        "fit_s": 0.0936897,
        "fit_s_per_click": 0,
        "clicks_per_request": 0.823172,
        "bytes_per_request": 271.4,
    },
    "random": {
        "selector": "UniformRandom",
        "serve_s": 3.11347e-05,
        "fit_s": 0.00134361,
        "fit_s_per_click": 1.52395e-06,
        "clicks_per_request": 0.456064,
        "bytes_per_request": 118.648,
    },
}
