"""The ``recloop`` entry point: config validation, the pure ``run(cfg, out_dir)``, the hydra app."""
