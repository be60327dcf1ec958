"""A toy fourth task, registered as a user registers one (docs/adding_a_task.md): 8x8 grey images, bright or
dark, on a two-block CNN. The tests register it ($TRECX_EXTRA_TASKS, tests/ on PYTHONPATH: tests/conftest.py),
so that every check parametrised over the registry is made of a task added through the protocol too."""
