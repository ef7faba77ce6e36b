"""Cost-model constants measured by ``benchmarks/calibrate_costs.py`` (generated: edit
by re-running it on a 2-core machine with nothing else running)."""

# 2026-12-02, horizons 10 and 30 days, small world, seed 100
JOB_OVERHEAD_S = 0.506  # per job: report, setup (median)
SWEEP_OVERHEAD_S = 3.898  # per sweep: start-up, precheck, comparison and sweep report
REPORT_BYTES = 120000
# per preset: seconds per request at 1,000 items (serve, respond, log, metrics); seconds per retrain
# (fit + quality probe) fixed and per training click; clicks and bytes per request.
# 'base+group=choice': base with policy/group=choice (its class: target); the cost model
# adds its difference to base onto every job that uses that class.
PRESETS: dict[str, dict] = {
    "greedy": {
        "selector": "Greedy",
        "serve_s": 7.90204e-05,
        "fit_s": 0.135949,
        "fit_s_per_click": 1.54677e-06,
        "clicks_per_request": 0.766373,
        "bytes_per_request": 184.132,
    },
    "epsilon_greedy": {
        "selector": "EpsilonGreedy",
        "serve_s": 8.5913e-05,
        "fit_s": 0.134395,
        "fit_s_per_click": 2.15704e-06,
        "clicks_per_request": 0.804148,
        "bytes_per_request": 216.511,
    },
    "epsilon_decay": {
        "selector": "EpsilonGreedy",
        "serve_s": 7.97536e-05,
        "fit_s": 0.133924,
        "fit_s_per_click": 2.34369e-06,
        "clicks_per_request": 0.80361,
        "bytes_per_request": 228.917,
    },
    "softmax": {
        "selector": "Softmax",
        "serve_s": 0.000451501,
        "fit_s": 0.115535,
        "fit_s_per_click": 1.20261e-06,
        "clicks_per_request": 0.915835,
        "bytes_per_request": 419.334,
    },
    "ucb": {
        "selector": "UCB",
        "serve_s": 0.000168526,
        "fit_s": 0.11362,
        "fit_s_per_click": 1.75177e-06,
        "clicks_per_request": 0.876703,
        "bytes_per_request": 237.623,
    },
    "thompson": {
        "selector": "Thompson",
        "serve_s": 0.000496438,
        "fit_s": 0.114768,
        "fit_s_per_click": 1.53659e-06,
        "clicks_per_request": 0.910885,
        "bytes_per_request": 361.868,
    },
    "linucb": {
        "selector": "UCB",
        "serve_s": 0.000152884,
        "fit_s": 0.0711616,
        "fit_s_per_click": 0,
        "clicks_per_request": 0.757721,
        "bytes_per_request": 217.704,
    },
    "lints": {
        "selector": "Thompson",
        "serve_s": 0.0006568,
        "fit_s": 0.0642213,
        "fit_s_per_click": 0,
        "clicks_per_request": 0.761986,
        "bytes_per_request": 346.419,
    },
    "item_boost": {
        "selector": "ExposureBoost",
        "serve_s": 8.08535e-05,
        "fit_s": 0.139627,
        "fit_s_per_click": 1.66779e-06,
        "clicks_per_request": 0.776406,
        "bytes_per_request": 201.231,
    },
    "random": {
        "selector": "UniformRandom",
        "serve_s": 3.75182e-05,
        "fit_s": 0.000327528,
        "fit_s_per_click": 1.23996e-09,
        "clicks_per_request": 0.453884,
        "bytes_per_request": 126.607,
    },
    "popularity": {
        "selector": "Greedy",
        "serve_s": 3.72004e-05,
        "fit_s": 0.00543913,
        "fit_s_per_click": 2.39603e-08,
        "clicks_per_request": 0.726753,
        "bytes_per_request": 102.537,
    },
    "oracle": {
        "selector": "Greedy",
        "serve_s": 5.15722e-05,
        "fit_s": 0.00954064,
        "fit_s_per_click": 6.62244e-10,
        "clicks_per_request": 2.19596,
        "bytes_per_request": 194.541,
    },
    "bpr": {
        "selector": "Greedy",
        "serve_s": 0.000193371,
        "fit_s": 0.0926827,
        "fit_s_per_click": 1.10378e-05,
        "clicks_per_request": 0.550197,
        "bytes_per_request": 169.428,
    },
    "lmf": {
        "selector": "Greedy",
        "serve_s": 0.000190952,
        "fit_s": 0.265802,
        "fit_s_per_click": 4.96336e-06,
        "clicks_per_request": 0.805614,
        "bytes_per_request": 183.942,
    },
    "item_knn": {
        "selector": "Greedy",
        "serve_s": 5.58373e-05,
        "fit_s": 0.0205374,
        "fit_s_per_click": 1.79847e-07,
        "clicks_per_request": 0.811896,
        "bytes_per_request": 155.11,
    },
    "item_knn_bm25": {
        "selector": "Greedy",
        "serve_s": 5.3662e-05,
        "fit_s": 0.017342,
        "fit_s_per_click": 2.37148e-07,
        "clicks_per_request": 0.73576,
        "bytes_per_request": 172.501,
    },
    "greedy+retrieve=mixed": {
        "selector": "Greedy",
        "target": "policies.retrieval.MixedRetrieval",
        "serve_s": 0.000164066,
        "fit_s": 0.170933,
        "fit_s_per_click": 3.93465e-06,
        "clicks_per_request": 0.766373,
        "bytes_per_request": 191.238,
    },
    "greedy+rerank=learned": {
        "selector": "Greedy",
        "target": "policies.learned_rerank.LearnedRerank",
        "serve_s": 0.000186968,
        "fit_s": 1.13954,
        "fit_s_per_click": 6.32684e-07,
        "clicks_per_request": 1.08616,
        "bytes_per_request": 205,
    },
}
