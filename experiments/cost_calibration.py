"""Cost-model constants measured by ``benchmarks/calibrate_costs.py`` (generated: edit
by re-running it on a 2-core machine with nothing else running)."""

# 2026-12-02, horizons 10 and 30 days, small world, seed 100
JOB_OVERHEAD_S = 0.463  # per job: report, setup (median)
SWEEP_OVERHEAD_S = 5.302  # per sweep: start-up, precheck, comparison and sweep report
REPORT_BYTES = 120000
# per preset: seconds per request at 1,000 items (serve, respond, log, metrics); seconds per retrain
# (fit + quality probe) fixed and per training click; clicks and bytes per request
PRESETS: dict[str, dict] = {
    "greedy": {
        "selector": "Greedy",
        "serve_s": 6.84371e-05,
        "fit_s": 0.122695,
        "fit_s_per_click": 1.56272e-06,
        "clicks_per_request": 0.766373,
        "bytes_per_request": 178.575,
    },
    "epsilon_greedy": {
        "selector": "EpsilonGreedy",
        "serve_s": 6.59562e-05,
        "fit_s": 0.15027,
        "fit_s_per_click": 5.35555e-07,
        "clicks_per_request": 0.804148,
        "bytes_per_request": 210.953,
    },
    "epsilon_decay": {
        "selector": "EpsilonGreedy",
        "serve_s": 7.57452e-05,
        "fit_s": 0.136493,
        "fit_s_per_click": 1.01795e-06,
        "clicks_per_request": 0.80361,
        "bytes_per_request": 223.359,
    },
    "softmax": {
        "selector": "Softmax",
        "serve_s": 0.000442886,
        "fit_s": 0.0939154,
        "fit_s_per_click": 1.42124e-06,
        "clicks_per_request": 0.915835,
        "bytes_per_request": 413.724,
    },
    "ucb": {
        "selector": "UCB",
        "serve_s": 0.000169724,
        "fit_s": 0.107467,
        "fit_s_per_click": 6.98809e-07,
        "clicks_per_request": 0.876703,
        "bytes_per_request": 232.016,
    },
    "thompson": {
        "selector": "Thompson",
        "serve_s": 0.000490572,
        "fit_s": 0.0895772,
        "fit_s_per_click": 1.41779e-06,
        "clicks_per_request": 0.910885,
        "bytes_per_request": 356.258,
    },
    "linucb": {
        "selector": "UCB",
        "serve_s": 0.000142031,
        "fit_s": 0.042205,
        "fit_s_per_click": 5.96115e-08,
        "clicks_per_request": 0.757721,
        "bytes_per_request": 212.098,
    },
    "lints": {
        "selector": "Thompson",
        "serve_s": 0.000610251,
        "fit_s": 0.0379492,
        "fit_s_per_click": 8.99531e-08,
        "clicks_per_request": 0.761986,
        "bytes_per_request": 340.81,
    },
    "item_boost": {
        "selector": "ExposureBoost",
        "serve_s": 7.00013e-05,
        "fit_s": 0.0977625,
        "fit_s_per_click": 1.75449e-06,
        "clicks_per_request": 0.776406,
        "bytes_per_request": 195.673,
    },
    "random": {
        "selector": "UniformRandom",
        "serve_s": 3.12122e-05,
        "fit_s": 0.00014288,
        "fit_s_per_click": 1.69462e-08,
        "clicks_per_request": 0.453884,
        "bytes_per_request": 121.46,
    },
    "popularity": {
        "selector": "Greedy",
        "serve_s": 3.4353e-05,
        "fit_s": 0.0043934,
        "fit_s_per_click": 1.70752e-08,
        "clicks_per_request": 0.726753,
        "bytes_per_request": 96.9905,
    },
    "oracle": {
        "selector": "Greedy",
        "serve_s": 5.03501e-05,
        "fit_s": 0.00554679,
        "fit_s_per_click": 2.01157e-08,
        "clicks_per_request": 2.19596,
        "bytes_per_request": 188.983,
    },
    "bpr": {
        "selector": "Greedy",
        "serve_s": 0.000196133,
        "fit_s": 0.0503564,
        "fit_s_per_click": 1.08774e-05,
        "clicks_per_request": 0.550197,
        "bytes_per_request": 163.876,
    },
    "lmf": {
        "selector": "Greedy",
        "serve_s": 0.000188287,
        "fit_s": 0.228671,
        "fit_s_per_click": 4.55841e-06,
        "clicks_per_request": 0.805614,
        "bytes_per_request": 178.387,
    },
    "item_knn": {
        "selector": "Greedy",
        "serve_s": 4.99346e-05,
        "fit_s": 0.0166649,
        "fit_s_per_click": 0,
        "clicks_per_request": 0.811896,
        "bytes_per_request": 149.558,
    },
    "item_knn_bm25": {
        "selector": "Greedy",
        "serve_s": 5.80004e-05,
        "fit_s": 0.0134362,
        "fit_s_per_click": 4.41322e-07,
        "clicks_per_request": 0.73576,
        "bytes_per_request": 166.947,
    },
}
