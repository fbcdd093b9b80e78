"""What every layer above uses; nothing here imports base/, data_loader/, model/, trainer/ or logger/.

The config:   parse_config.py (reading, --set, building objects), validation.py (the shape of a
              config), checks.py (one value against what is accepted), registry.py (the names a
              config may give, --list), optimizers.py (torch's optimizers and schedulers)
Run files:    runs.py (run folders), checkpoint.py (checkpoint files, random states), files.py
              (safe writes, metrics.jsonl)
The process:  device.py (-d, CPU threads, the allocator), distributed.py (torchrun), memory.py
              (a model's memory before it is built), errors.py (the errors a user sees, Ctrl-C)
"""
